import { PlannedOnceRead } from './db';
import { CHECK_STATE } from './limits.repo';

/** The reads that run as functions planned once per connection (store/db.ts, PlannedOnceRead); migrate() creates them. */
export const PLANNED_ONCE_READS: readonly PlannedOnceRead[] = [CHECK_STATE];
