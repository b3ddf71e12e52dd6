import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import { join } from 'node:path';
import { credentials } from '@grpc/grpc-js';
import { HealthClient, MeteringServiceClient } from '@metering/contracts';
import type { DatabaseConfig } from '../../src/store/db';

export const ROOT = join(__dirname, '..', '..', '..', '..');
const MAIN = join(ROOT, 'dist', 'apps', 'metering', 'main.js');

/** Bundles the server as `npm start` does. */
export function buildServer(): void {
  execFileSync(process.execPath, [join(ROOT, 'tools', 'scripts', 'build.mjs')], { stdio: 'inherit' });
}

export interface ServerProcess {
  port: number;
  address: string;
  /** The HTTP port's base URL (Connect and the dashboard), e.g. http://127.0.0.1:8080, when METERING_HTTP_PORT was set. */
  httpUrl?: string;
  child: ChildProcess;
  logs: string[];
  client: MeteringServiceClient;
  health: HealthClient;
  /** Sends a signal and waits for the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/**
 * Starts `count` server processes on one database at once, as replicas of a deployment start: on a
 * new database they all migrate it together (store/db.ts migrate serializes them).
 */
export function startServers(db: DatabaseConfig, count: number, env: Record<string, string> = {}): Promise<ServerProcess[]> {
  return Promise.all(Array.from({ length: count }, () => startServer(db, env)));
}

/** Starts the real server process on 127.0.0.1 and a free port, and waits until it listens. */
export function startServer(db: DatabaseConfig, env: Record<string, string> = {}, startMs = 45_000): Promise<ServerProcess> {
  const child = spawn(process.execPath, ['--enable-source-maps', MAIN], {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH ?? '',
      PORT: '0',
      METERING_HOST: '127.0.0.1',
      METERING_AUTH: 'off',
      ...(db.url ? { DATABASE_URL: db.url } : { METERING_DATA_DIR: db.dataDir }),
      ...(db.listenUrl ? { METERING_LISTEN_DATABASE_URL: db.listenUrl } : {}),
      ...(db.namedStatements === false ? { METERING_NAMED_STATEMENTS: 'false' } : {}),
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: string[] = [];
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return new Promise((resolve, reject) => {
    let buffer = '';
    let httpUrl: string | undefined;
    // A server that has not started in time is killed: left running, it would hold its database (and keep jest from exiting).
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`server did not start in ${startMs / 1000} s:\n${logs.join('\n')}`));
    }, startMs);
    child.stderr?.on('data', (d: Buffer) => logs.push(d.toString()));
    child.stdout?.on('data', (d: Buffer) => {
      buffer += d.toString();
      let nl: number;
      while ((nl = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        logs.push(line);
        const entry = (() => {
          try {
            return JSON.parse(line) as { msg?: string; port?: number; http_port?: number };
          } catch {
            return {};
          }
        })();
        if (entry.msg === 'http' && entry.http_port) httpUrl = `http://127.0.0.1:${entry.http_port}`;
        if (entry.msg === 'listening' && entry.port) {
          clearTimeout(timer);
          const address = `127.0.0.1:${entry.port}`;
          const client = new MeteringServiceClient(address, credentials.createInsecure());
          const health = new HealthClient(address, credentials.createInsecure());
          resolve({
            port: entry.port,
            address,
            httpUrl,
            child,
            logs,
            client,
            health,
            stop: async (signal = 'SIGTERM') => {
              client.close();
              health.close();
              if (child.exitCode === null) child.kill(signal);
              return exited;
            },
          });
        }
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code} before listening:\n${logs.join('\n')}`));
    });
  });
}
