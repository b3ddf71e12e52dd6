import type { Knex } from 'knex';
import type { Db } from '../../src/store/db';

/** A statement as knex reports it sent (its `query` event): the text, the values, and its name when it is a named statement. */
export interface SentStatement {
  sql: string;
  bindings: Knex.RawBinding[];
  options?: { name?: string };
}

/** The statements `fn` sends to the database, in order (counted from the driver's query events, never timed). */
export async function statementsSentBy(db: Db, fn: () => Promise<unknown>): Promise<SentStatement[]> {
  const sent: SentStatement[] = [];
  const listener = (q: SentStatement) => sent.push(q);
  db.on('query', listener);
  try {
    await fn();
  } finally {
    db.off('query', listener);
  }
  return sent;
}
