import { ApiKey, formatKeySecret, NotFoundError, validateCreateApiKey, validateKeyRef } from '@metering/domain';
import { createHash, randomBytes } from 'node:crypto';
import { findApiKey, insertApiKey, listApiKeys, revokeApiKey } from '../store/api-keys.repo';
import { Db, inTransaction, read } from '../store/db';

/** The hash stored for a key secret. Secrets are 256 random bits, so a fast hash is enough (nothing to brute-force). */
export const hashSecret = (secret: string): string => createHash('sha256').update(secret).digest('base64url');

/** CreateApiKey, RevokeApiKey, ListApiKeys, and the lookup behind authentication. */
export class ApiKeysService {
  constructor(
    private readonly db: Db,
    private readonly clock: () => Date = () => new Date(),
    private readonly onRevoke: (accountId: string, keyId: string) => void = () => undefined,
  ) {}

  async create(raw: { accountId: string; name: string; scopes: number[] }): Promise<{ key: ApiKey; secret: string }> {
    const req = validateCreateApiKey(raw);
    const keyId = `k_${randomBytes(6).toString('hex')}`;
    const secret = formatKeySecret(req.accountId, keyId, randomBytes(32).toString('base64url'));
    const key = await inTransaction(this.db, (tx) => insertApiKey(tx, { ...req, keyId }, hashSecret(secret)));
    return { key, secret };
  }

  async revoke(raw: { accountId: string; keyId: string }): Promise<ApiKey> {
    const ref = validateKeyRef(raw);
    const key = await inTransaction(this.db, (tx) => revokeApiKey(tx, ref.accountId, ref.keyId, this.clock()));
    if (!key) throw new NotFoundError('API_KEY_NOT_FOUND', `API key ${ref.keyId} does not exist in this account`);
    this.onRevoke(ref.accountId, ref.keyId);
    return key;
  }

  async list(raw: { accountId: string }): Promise<ApiKey[]> {
    const ref = validateKeyRef({ accountId: raw.accountId, keyId: 'k_000000000000' });
    return read(() => listApiKeys(this.db, ref.accountId));
  }

  /** The stored key for authentication, or undefined. */
  find(accountId: string, keyId: string) {
    return read(() => findApiKey(this.db, accountId, keyId));
  }
}
