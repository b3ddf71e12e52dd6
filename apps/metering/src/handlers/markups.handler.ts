import {
  DeleteMarkupRequest,
  DeleteMarkupResponse,
  ListMarkupsRequest,
  ListMarkupsResponse,
  Markup as PbMarkup,
  SetMarkupRequest,
  SetMarkupResponse,
} from '@metering/contracts';
import { Markup } from '@metering/domain';
import { formatDecimal } from '@metering/pricing';
import { MarkupsService } from '../services/markups.service';
import { toProtoChargeType, toProtoTimestamp } from './convert';

/** SetMarkup, ListMarkups, DeleteMarkup: wire -> service -> wire. */

const toProtoMarkup = (m: Markup): PbMarkup => ({
  accountId: m.accountId,
  updatedBy: m.updatedBy,
  chargeType: toProtoChargeType(m.chargeType),
  provider: m.provider,
  model: m.model,
  factor: formatDecimal(m.factor),
  updateTime: m.updateTime ? toProtoTimestamp(m.updateTime) : undefined,
});

export const setMarkupHandler =
  (service: MarkupsService) =>
  async (req: SetMarkupRequest): Promise<SetMarkupResponse> => ({ markup: toProtoMarkup(await service.setMarkup(req)) });

export const listMarkupsHandler =
  (service: MarkupsService) =>
  async (req: ListMarkupsRequest): Promise<ListMarkupsResponse> => ({ markups: (await service.listMarkups(req)).map(toProtoMarkup) });

export const deleteMarkupHandler =
  (service: MarkupsService) =>
  async (req: DeleteMarkupRequest): Promise<DeleteMarkupResponse> => ({ deleted: await service.deleteMarkup(req) });
