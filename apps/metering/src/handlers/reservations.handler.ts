import { GetReservationRequest, GetReservationResponse, ListReservationsRequest, ListReservationsResponse, ReleaseReservationRequest, ReleaseReservationResponse } from '@metering/contracts';
import { ReservationsService } from '../services/reservations.service';
import { toProtoReservation } from './convert';

/** ReleaseReservation, GetReservation and ListReservations: wire -> service -> wire. Reserving is CheckLimits; settling is RecordCharge. */

export const releaseReservationHandler =
  (service: ReservationsService) =>
  async (req: ReleaseReservationRequest): Promise<ReleaseReservationResponse> => ({ reservation: toProtoReservation(await service.release(req)) });

export const getReservationHandler =
  (service: ReservationsService) =>
  async (req: GetReservationRequest): Promise<GetReservationResponse> => ({ reservation: toProtoReservation(await service.get(req)) });

export const listReservationsHandler =
  (service: ReservationsService) =>
  async (req: ListReservationsRequest): Promise<ListReservationsResponse> => {
    const page = await service.list(req);
    return { reservations: page.reservations.map((r) => toProtoReservation(r)), nextPageToken: page.nextPageToken };
  };
