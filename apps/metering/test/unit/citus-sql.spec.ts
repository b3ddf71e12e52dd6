import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * A lint of the service's SQL for what Citus refuses on distributed tables
 * (docs/scaling.md, section 4), so that CI, which has no Citus, still fails
 * on it:
 * - an upsert's DO UPDATE SET (and knex's .merge(), which writes it) may use
 *   IMMUTABLE functions only: "functions used in the DO UPDATE SET clause of
 *   INSERTs on distributed tables must be marked IMMUTABLE". Times are passed
 *   as parameters (or taken from `excluded`);
 * - an UPDATE's SET may not call a VOLATILE function ("functions used in
 *   UPDATE queries on distributed tables must not be VOLATILE").
 */
const STORE = join(__dirname, '../../src/store');

/** Functions that are not IMMUTABLE (time, randomness, sequences, transaction ids), as they appear in SQL. */
const NOT_IMMUTABLE = /\b(now\s*\(|current_timestamp\b|current_date\b|current_time\b|localtimestamp\b|localtime\b|clock_timestamp\s*\(|statement_timestamp\s*\(|transaction_timestamp\s*\(|timeofday\s*\(|random\s*\(|gen_random_uuid\s*\(|uuid_generate_v\d\s*\(|nextval\s*\(|txid_current\s*\(|pg_current_xact_id\s*\()/i;
const VOLATILE = /\b(clock_timestamp\s*\(|timeofday\s*\(|random\s*\(|gen_random_uuid\s*\(|uuid_generate_v\d\s*\(|nextval\s*\()/i;

export interface Finding {
  file: string;
  line: number;
  rule: string;
  text: string;
}

/** The text of a call's arguments from the opening parenthesis at `open`, parentheses balanced. */
function balanced(source: string, open: number): string {
  let depth = 0;
  for (let i = open; i < source.length; i++) {
    if (source[i] === '(') depth++;
    else if (source[i] === ')' && --depth === 0) return source.slice(open, i + 1);
  }
  return source.slice(open);
}

/** A SQL clause from `start` up to where it ends: RETURNING, the end of the template, or the CTE/statement's closing parenthesis. */
function clause(source: string, start: number): string {
  let depth = 0;
  for (let i = start; i < source.length; i++) {
    const c = source[i];
    if (c === '(') depth++;
    else if (c === ')' && depth-- === 0) return source.slice(start, i);
    else if (c === '`') return source.slice(start, i);
    else if (depth === 0 && /^(RETURNING|WHERE)\b/i.test(source.slice(i, i + 9))) return source.slice(start, i);
  }
  return source.slice(start);
}

export function lintSql(file: string, source: string): Finding[] {
  const findings: Finding[] = [];
  const lineOf = (at: number) => source.slice(0, at).split('\n').length;
  for (const m of source.matchAll(/\.merge\s*\(/g)) {
    const args = balanced(source, m.index + m[0].length - 1);
    if (/fn\s*\.\s*now\s*\(|\.raw\s*\(/.test(args) || NOT_IMMUTABLE.test(args)) {
      findings.push({ file, line: lineOf(m.index), rule: 'upsert (knex .merge) uses a function that is not IMMUTABLE; pass the value as a parameter', text: args });
    }
  }
  for (const m of source.matchAll(/DO\s+UPDATE\s+SET\b/gi)) {
    const set = clause(source, m.index + m[0].length);
    const bad = set.match(NOT_IMMUTABLE);
    if (bad) findings.push({ file, line: lineOf(m.index), rule: `DO UPDATE SET uses ${bad[0].trim()}, which is not IMMUTABLE; pass the value as a parameter or use excluded.<column>`, text: set.trim() });
  }
  for (const m of source.matchAll(/\bUPDATE\s+\w+(\s+(AS\s+)?\w+)?\s+SET\b/gi)) {
    const set = clause(source, m.index + m[0].length);
    const bad = set.match(VOLATILE);
    if (bad) findings.push({ file, line: lineOf(m.index), rule: `UPDATE ... SET uses ${bad[0].trim()}, which is VOLATILE`, text: set.trim() });
  }
  return findings;
}

function storeFiles(): string[] {
  return readdirSync(STORE)
    .filter((f) => f.endsWith('.ts'))
    .map((f) => join(STORE, f));
}

describe('SQL lint for Citus (functions in upserts and updates)', () => {
  it('finds nothing Citus refuses in the store', () => {
    const findings = storeFiles().flatMap((f) => lintSql(f, readFileSync(f, 'utf8')));
    expect(findings.map((f) => `${f.file}:${f.line}: ${f.rule}\n    ${f.text.slice(0, 200)}`)).toEqual([]);
  });

  it('flags each form it is meant to (the upserts as they were written before, and SQL text)', () => {
    const knexUpsert = `await tx('limits').insert({ a: 1 }).onConflict(['a']).merge({ amount: x, updated_at: tx.fn.now() }).returning('*');`;
    const sqlUpsert = 'const S = `INSERT INTO accounts (account_id) VALUES (?) ON CONFLICT (account_id) DO UPDATE SET updated_at = CURRENT_TIMESTAMP RETURNING 1`;';
    const sqlUpsertNow = 'const S = `INSERT INTO t AS c (a) SELECT 1 ON CONFLICT (a) DO UPDATE SET n = c.n + 1, updated_at = now()\n RETURNING 1`;';
    const update = 'const S = `UPDATE webhook_deliveries d SET next_attempt_at = clock_timestamp() WHERE account_id = ?`;';
    const fine = 'const S = `INSERT INTO t AS c (a) SELECT 1 ON CONFLICT (a) DO UPDATE SET n = c.n + 1, updated_at = excluded.updated_at WHERE c.created_at < now() RETURNING 1`;';
    expect(lintSql('x.ts', knexUpsert)).toHaveLength(1);
    expect(lintSql('x.ts', sqlUpsert)).toHaveLength(1);
    expect(lintSql('x.ts', sqlUpsertNow)).toHaveLength(1);
    expect(lintSql('x.ts', update)).toHaveLength(1);
    expect(lintSql('x.ts', fine)).toEqual([]);
    expect(lintSql('x.ts', `tx('a').insert(r).onConflict('a').merge({ updated_at: now })`)).toEqual([]);
  });
});
