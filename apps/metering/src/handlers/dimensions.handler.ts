import { ChargeType, Dimensions, GetDimensionsRequest, GetDimensionsResponse, QueryUsageRequest, QueryUsageResponse, SetDimensionsRequest, SetDimensionsResponse } from '@metering/contracts';
import { DEFAULT_MAX_VALUES_PER_DAY, type DimensionSettings } from '@metering/domain';
import { DimensionsService } from '../services/dimensions.service';
import { toProtoChargeType, toProtoSums, toProtoTimestamp } from './convert';

/** SetDimensions, GetDimensions and QueryUsage: wire -> service -> wire. */

const toProtoDimensions = (d: DimensionSettings): Dimensions => ({
  accountId: d.accountId,
  tagKeys: d.tagKeys,
  maxValuesPerDay: d.maxValuesPerDay ?? DEFAULT_MAX_VALUES_PER_DAY,
  updateTime: d.updateTime ? toProtoTimestamp(d.updateTime) : undefined,
});

export const setDimensionsHandler =
  (service: DimensionsService) =>
  async (req: SetDimensionsRequest): Promise<SetDimensionsResponse> => ({ dimensions: toProtoDimensions(await service.setDimensions(req)) });

export const getDimensionsHandler =
  (service: DimensionsService) =>
  async (req: GetDimensionsRequest): Promise<GetDimensionsResponse> => {
    const r = await service.getDimensions(req);
    return { dimensions: toProtoDimensions(r.dimensions), declared: r.declared };
  };

export const queryUsageHandler =
  (service: DimensionsService) =>
  async (req: QueryUsageRequest): Promise<QueryUsageResponse> => {
    const page = await service.queryUsage(req);
    return {
      groups: page.groups.map((g) => ({
        period: g.period,
        userId: g.userId ?? '',
        provider: g.provider ?? '',
        model: g.model ?? '',
        chargeType: g.chargeType ? toProtoChargeType(g.chargeType) : ChargeType.CHARGE_TYPE_UNSPECIFIED,
        apiKeyId: g.apiKeyId ?? '',
        tags: g.tags,
        sums: toProtoSums(g.sums),
      })),
      totals: toProtoSums(page.totals),
      nextPageToken: page.nextPageToken,
      timeZone: page.timeZone,
    };
  };
