// The public surface of the generated contract (proto/ -> ts-proto). Nothing
// here is written by hand except this list of re-exports, registry.ts and limits.ts,
// the message size limit the contract's two sides share.
export * from './gen/metering/v1/metering_service';
export * from './gen/metering/v1/account';
export * from './gen/metering/v1/alerts';
export * from './gen/metering/v1/charge';
export * from './gen/metering/v1/charge_queries';
export * from './gen/metering/v1/credits';
export * from './gen/metering/v1/dimensions';
export * from './gen/metering/v1/events';
export * from './gen/metering/v1/import';
export * from './gen/metering/v1/usage';
export * from './gen/metering/v1/limits';
export * from './gen/metering/v1/markup';
export * from './gen/metering/v1/money';
export * from './gen/metering/v1/pricing';
export * from './gen/google/rpc/status';
export * from './gen/google/rpc/error_details';
export { Any } from './gen/google/protobuf/any';
export { Timestamp } from './gen/google/protobuf/timestamp';
export {
  HealthCheckRequest,
  HealthCheckResponse,
  HealthCheckResponse_ServingStatus,
  HealthClient,
  type HealthServer,
  HealthService,
} from './gen/grpc/health/v1/health';
export { descriptorSetBase64 } from './gen/descriptor_set';
export { MAX_MESSAGE_BYTES } from './limits';
export { messageDesc, meteringServiceDesc, protoJson, registry } from './registry';
