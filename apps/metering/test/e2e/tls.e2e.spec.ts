import { ChannelCredentials, credentials, Metadata, status } from '@grpc/grpc-js';
import { MeteringServiceClient } from '@metering/contracts';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describeEachOf, TestDatabase, embeddedTarget } from '../support/databases';
import { call } from '../support/grpc';
import { buildServer, ServerProcess, startServer } from '../support/server-process';

/**
 * Issue 7: optional TLS and mutual TLS, end to end with certificates made by
 * openssl for this run: a TLS client that trusts the CA is served, a
 * plaintext client is not; with mutual TLS, a client without a certificate
 * (or with one from another CA) is refused.
 */
beforeAll(() => buildServer());

function makePki(dir: string): void {
  const ssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  writeFileSync(join(dir, 'san.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  for (const ca of ['ca', 'other-ca']) {
    ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${ca}.key`, '-out', `${ca}.pem`, '-days', '2', '-subj', `/CN=${ca}`);
  }
  for (const [name, ca] of [['server', 'ca'], ['client', 'ca'], ['stranger', 'other-ca']]) {
    ssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`);
    ssl('x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.pem`, '-CAkey', `${ca}.key`, '-CAcreateserial', '-out', `${name}.pem`, '-days', '2', '-extfile', 'san.ext');
  }
}

/** openssl makes the certificates; a machine without it skips this suite, except in CI. */
const haveOpenssl = (() => {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();
if (process.env.CI && !haveOpenssl) it('has openssl for the TLS suite', () => expect(haveOpenssl).toBe(true));

describeEachOf(embeddedTarget().filter(() => haveOpenssl), 'openssl')('TLS on $name', (target) => {
  let dir: string;
  let tdb: TestDatabase;
  const file = (name: string) => readFileSync(join(dir, name));
  const clientFor = (server: ServerProcess, creds: ChannelCredentials) => new MeteringServiceClient(server.address, creds);
  const getAccount = (client: MeteringServiceClient) => call(client.getAccount, client, { accountId: 'acme' });
  /** A call that must be refused at the TLS handshake: UNAVAILABLE (or its 2 s deadline, for a plaintext client). */
  const refused = async (client: MeteringServiceClient) => {
    const err = await new Promise<{ code: number }>((resolve) =>
      client.getAccount({ accountId: 'acme' }, new Metadata(), { deadline: Date.now() + 2000 }, (e) => resolve(e ?? { code: status.OK })),
    );
    return err.code;
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'metering-pki-'));
    makePki(dir);
    tdb = await target.create();
  });

  afterAll(async () => {
    await tdb?.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('serves TLS clients that trust its CA, and not plaintext clients', async () => {
    const server = await startServer(tdb.config, { METERING_TLS_CERT: join(dir, 'server.pem'), METERING_TLS_KEY: join(dir, 'server.key') });
    try {
      const tls = clientFor(server, credentials.createSsl(file('ca.pem')));
      expect((await getAccount(tls)).account?.timeZone).toBe('UTC');
      const plain = clientFor(server, credentials.createInsecure());
      expect([status.UNAVAILABLE, status.DEADLINE_EXCEEDED]).toContain(await refused(plain));
      const untrusting = clientFor(server, credentials.createSsl(file('other-ca.pem')));
      expect(await refused(untrusting)).toBe(status.UNAVAILABLE);
      for (const c of [tls, plain, untrusting]) c.close();
    } finally {
      await server.stop();
    }
  });

  it('with mutual TLS, serves only clients with a certificate signed by the client CA', async () => {
    const server = await startServer(tdb.config, {
      METERING_TLS_CERT: join(dir, 'server.pem'),
      METERING_TLS_KEY: join(dir, 'server.key'),
      METERING_TLS_CLIENT_CA: join(dir, 'ca.pem'),
    });
    try {
      const good = clientFor(server, credentials.createSsl(file('ca.pem'), file('client.key'), file('client.pem')));
      expect((await getAccount(good)).account?.accountId).toBe('acme');
      const anonymous = clientFor(server, credentials.createSsl(file('ca.pem')));
      expect(await refused(anonymous)).toBe(status.UNAVAILABLE);
      const stranger = clientFor(server, credentials.createSsl(file('ca.pem'), file('stranger.key'), file('stranger.pem')));
      expect(await refused(stranger)).toBe(status.UNAVAILABLE);
      for (const c of [good, anonymous, stranger]) c.close();
    } finally {
      await server.stop();
    }
  });

  it('refuses to start with half a TLS configuration', async () => {
    await expect(startServer(tdb.config, { METERING_TLS_CERT: join(dir, 'server.pem') })).rejects.toThrow(/METERING_TLS_CERT and METERING_TLS_KEY go together/);
  });
});
