import type { ApiKey, Scope } from '@metering/domain';
import type { Db, Tx } from './db';

/** SQL of the api_keys table. No business rules. */

interface ApiKeyRow {
  account_id: string;
  key_id: string;
  name: string;
  scopes: Scope[];
  secret_hash: string;
  created_at: Date;
  revoked_at: Date | null;
}

const COLUMNS = ['account_id', 'key_id', 'name', 'scopes', 'secret_hash', 'created_at', 'revoked_at'];

const fromRow = (r: ApiKeyRow): ApiKey & { secretHash: string } => ({
  accountId: r.account_id,
  keyId: r.key_id,
  name: r.name,
  scopes: r.scopes,
  createTime: r.created_at,
  revokeTime: r.revoked_at ?? undefined,
  secretHash: r.secret_hash,
});

export async function insertApiKey(tx: Tx, key: Omit<ApiKey, 'createTime'>, secretHash: string): Promise<ApiKey> {
  const [row] = await tx('api_keys')
    .insert({ account_id: key.accountId, key_id: key.keyId, name: key.name, scopes: key.scopes, secret_hash: secretHash })
    .returning(COLUMNS);
  return fromRow(row);
}

/** The key with its secret's hash, for authentication (a primary-key read). */
export async function findApiKey(db: Db, accountId: string, keyId: string): Promise<(ApiKey & { secretHash: string }) | undefined> {
  const row = await db('api_keys').select(COLUMNS).where({ account_id: accountId, key_id: keyId }).first();
  return row ? fromRow(row) : undefined;
}

export async function revokeApiKey(tx: Tx, accountId: string, keyId: string, at: Date): Promise<ApiKey | undefined> {
  await tx('api_keys').where({ account_id: accountId, key_id: keyId }).whereNull('revoked_at').update({ revoked_at: at });
  const row = await tx('api_keys').select(COLUMNS).where({ account_id: accountId, key_id: keyId }).first();
  return row ? fromRow(row) : undefined;
}

export async function listApiKeys(db: Db, accountId: string): Promise<ApiKey[]> {
  const rows: ApiKeyRow[] = await db('api_keys').select(COLUMNS).where({ account_id: accountId }).orderBy('created_at', 'desc').limit(1000);
  return rows.map(fromRow);
}
