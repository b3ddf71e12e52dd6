import { GetDailyUsageRequest, GetDailyUsageResponse } from '@metering/contracts';
import { UsageService } from '../services/usage.service';
import { toProtoChargeType, toProtoSums } from './convert';

/** GetDailyUsage: wire -> service -> wire. */
export const getDailyUsageHandler =
  (service: UsageService) =>
  async (req: GetDailyUsageRequest): Promise<GetDailyUsageResponse> => {
    const page = await service.getDailyUsage(req);
    return {
      usage: page.rows.map((r) => ({
        date: r.usageDate,
        userId: r.userId,
        provider: r.provider,
        model: r.model,
        chargeType: toProtoChargeType(r.chargeType),
        sums: toProtoSums(r.sums),
      })),
      totals: toProtoSums(page.totals),
      nextPageToken: page.nextPageToken,
    };
  };
