import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './pg-cluster';

/**
 * PgBouncer in transaction mode in front of a Postgres server, for the suites
 * CI runs through a pooler (METERING_TEST_PGBOUNCER names the pgbouncer binary,
 * e.g. /usr/sbin/pgbouncer from Debian's package). The configuration is the one
 * docs/scaling.md describes; as root it runs as the postgres user (pgbouncer
 * refuses to run as root).
 */
export const PGBOUNCER_BIN = process.env.METERING_TEST_PGBOUNCER || undefined;

/** The settings docs/scaling.md gives, besides addresses and files. */
export const PGBOUNCER_SETTINGS = {
  pool_mode: 'transaction',
  // Retry a failed server connection after 1 s, not 15: recovery from a Postgres restart.
  server_login_retry: '1',
  // A client waiting for a server connection gets an error within this, like the pool's acquire timeout.
  query_wait_timeout: '1',
  max_client_conn: '1000',
  default_pool_size: '20',
};

export class PgBouncer {
  private constructor(
    private readonly dir: string,
    readonly port: number,
    private readonly child: ChildProcess,
  ) {}

  /** `upstream` is a direct Postgres URL; the returned pooler serves every database of that server. */
  static async start(upstream: string, bin = PGBOUNCER_BIN): Promise<PgBouncer> {
    if (!bin || !existsSync(bin)) throw new Error(`pgbouncer not found (METERING_TEST_PGBOUNCER=${bin ?? ''})`);
    const target = new URL(upstream);
    const dir = mkdtempSync(join(tmpdir(), 'metering-pgbouncer-'));
    chmodSync(dir, 0o777);
    const port = await freePort();
    const ini = join(dir, 'pgbouncer.ini');
    const settings = {
      listen_addr: '127.0.0.1',
      listen_port: String(port),
      unix_socket_dir: '',
      auth_type: 'any',
      logfile: join(dir, 'pgbouncer.log'),
      ...PGBOUNCER_SETTINGS,
    };
    writeFileSync(
      ini,
      [
        '[databases]',
        `* = host=${target.hostname} port=${target.port || 5432} user=${decodeURIComponent(target.username) || 'postgres'}`,
        '[pgbouncer]',
        ...Object.entries(settings).map(([k, v]) => `${k} = ${v}`),
        '',
      ].join('\n'),
    );
    chmodSync(ini, 0o644);
    // As root, as the postgres user (spawned with its uid directly, so that signals reach pgbouncer itself).
    const asRoot = process.getuid?.() === 0;
    const ids = asRoot ? { uid: Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' })), gid: Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' })) } : {};
    // Its log goes to the logfile (log()); an unread stderr pipe would fill and stop it.
    const child = spawn(bin, [ini], { stdio: 'ignore', ...ids });
    const bouncer = new PgBouncer(dir, port, child);
    await bouncer.waitListening();
    return bouncer;
  }

  /**
   * How the server connects through this pooler: queries through it, LISTEN straight to
   * `direct`, and statements unnamed (Debian's PgBouncer 1.18 cannot keep named prepared
   * statements in transaction mode; 1.21+ with max_prepared_statements can).
   */
  connection(direct: string): { url: string; listenUrl: string; namedStatements: false } {
    return { url: this.url(direct), listenUrl: direct, namedStatements: false };
  }

  /** The URL of `database` through the pooler. */
  url(direct: string): string {
    const u = new URL(direct);
    u.hostname = '127.0.0.1';
    u.port = String(this.port);
    return u.toString();
  }

  log(): string {
    return existsSync(join(this.dir, 'pgbouncer.log')) ? readFileSync(join(this.dir, 'pgbouncer.log'), 'utf8') : '';
  }

  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      const exited = new Promise((resolve) => this.child.once('exit', resolve));
      this.child.kill('SIGINT'); // pgbouncer's fast shutdown
      const timer = setTimeout(() => this.child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    }
    rmSync(this.dir, { recursive: true, force: true });
  }

  private async waitListening(): Promise<void> {
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      if (this.child.exitCode !== null) throw new Error(`pgbouncer exited with ${this.child.exitCode}: ${this.log()}`);
      const up = await new Promise<boolean>((resolve) => {
        const s = connect(this.port, '127.0.0.1', () => {
          s.end();
          resolve(true);
        });
        s.once('error', () => resolve(false));
      });
      if (up) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`pgbouncer did not listen on ${this.port} within 10 s: ${this.log()}`);
  }
}
