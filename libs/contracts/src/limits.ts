/**
 * The largest message either side sends or accepts: 4 MiB, the default
 * receive limit of gRPC clients in every language. The server refuses a
 * larger request (RESOURCE_EXHAUSTED) and never sends a larger answer
 * (RecordCharges refuses, before writing, a batch whose answer could be
 * larger); libs/client uses the same limit both ways.
 */
export const MAX_MESSAGE_BYTES = 4 * 1024 * 1024;
