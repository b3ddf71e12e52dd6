import {
  ApiKey as PbApiKey,
  ApiKeyScope,
  CreateApiKeyRequest,
  CreateApiKeyResponse,
  ListApiKeysRequest,
  ListApiKeysResponse,
  RevokeApiKeyRequest,
  RevokeApiKeyResponse,
} from '@metering/contracts';
import { ApiKey } from '@metering/domain';
import { ApiKeysService } from '../services/api-keys.service';
import { toProtoTimestamp } from './convert';

/** CreateApiKey, RevokeApiKey, ListApiKeys: wire -> service -> wire. */

const SCOPE = { record: ApiKeyScope.API_KEY_SCOPE_RECORD, read: ApiKeyScope.API_KEY_SCOPE_READ, admin: ApiKeyScope.API_KEY_SCOPE_ADMIN };

const toProtoApiKey = (k: ApiKey): PbApiKey => ({
  accountId: k.accountId,
  keyId: k.keyId,
  name: k.name,
  scopes: k.scopes.map((s) => SCOPE[s]),
  createTime: toProtoTimestamp(k.createTime),
  revokeTime: k.revokeTime ? toProtoTimestamp(k.revokeTime) : undefined,
});

export const createApiKeyHandler =
  (service: ApiKeysService) =>
  async (req: CreateApiKeyRequest): Promise<CreateApiKeyResponse> => {
    const { key, secret } = await service.create(req);
    return { key: toProtoApiKey(key), secret };
  };

export const revokeApiKeyHandler =
  (service: ApiKeysService) =>
  async (req: RevokeApiKeyRequest): Promise<RevokeApiKeyResponse> => ({ key: toProtoApiKey(await service.revoke(req)) });

export const listApiKeysHandler =
  (service: ApiKeysService) =>
  async (req: ListApiKeysRequest): Promise<ListApiKeysResponse> => ({ keys: (await service.list(req)).map(toProtoApiKey) });
