import { connectNodeAdapter } from '@connectrpc/connect-node';
import { registry } from '@metering/contracts';
import { existsSync, readFileSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { join } from 'node:path';
import sirv from 'sirv';
import type { Config } from '../config';
import type { Logger } from '../logger';
import type { Telemetry } from '../grpc/unary';
import type { MeteringMethods } from '../server';
import { meteringRoutes } from './connect';
import { otlpReceiver } from './otlp';

/**
 * The HTTP port (METERING_HTTP_PORT): MeteringService over the Connect protocol at
 * /metering.v1.MeteringService/<Method> (JSON for browsers and curl, also binary protobuf), and
 * the dashboard (a static single-page app built into dist/dashboard) at /, and the OTLP/HTTP
 * traces receiver at /v1/traces (otlp.ts). TLS when the gRPC
 * port has it, with the same certificate.
 */

export interface HttpServer {
  port: number;
  /** Stops taking connections; open streams are ended by the shared OpenStreams. */
  close(): Promise<void>;
}

/** Where the dashboard's built files are: beside the bundled server (dist/dashboard), as `npm run build` leaves them. */
export function dashboardDir(): string | undefined {
  const dir = process.env.METERING_DASHBOARD_DIR || join(__dirname, '..', '..', 'dashboard');
  return existsSync(join(dir, 'index.html')) ? dir : undefined;
}

export async function serveHttp(config: Config, port: number, methods: MeteringMethods, log: Logger, telemetry: Telemetry): Promise<HttpServer> {
  const dir = dashboardDir();
  const assets = dir ? sirv(dir, { single: true, etag: true, gzip: false }) : undefined;
  const notFound = (_req: IncomingMessage, res: ServerResponse) => {
    res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' });
    res.end(dir ? 'not found\n' : 'the dashboard is not built: run `npm run build`\n');
  };
  const handler = connectNodeAdapter({
    routes: meteringRoutes(methods, log, telemetry),
    // Requests and answers as the contract's JSON: enum names, RFC 3339 times, int64 strings, every
    // field in answers. An unknown field in a request is refused, not dropped: a misspelt
    // "prompt_token" must not record a charge without its tokens.
    jsonOptions: { registry, alwaysEmitImplicit: true, ignoreUnknownFields: false },
    readMaxBytes: 4 * 1024 * 1024,
    // Not an RPC: a file of the dashboard (index.html for any other path of the app), or 404.
    fallback: (request, response) => {
      const [req, res] = [request as IncomingMessage, response as ServerResponse];
      if (assets && (req.method === 'GET' || req.method === 'HEAD')) assets(req, res, () => notFound(req, res));
      else notFound(req, res);
    },
  });
  // OTLP/HTTP traces (POST /v1/traces): GenAI spans become charges (otlp.ts).
  const otlp = otlpReceiver(methods, config.otlpUserAttribute, log);
  const route = (req: IncomingMessage, res: ServerResponse) => (otlp.handles(req) ? void otlp.handle(req, res) : handler(req, res));
  const server: Server = config.tls
    ? createHttpsServer({ cert: readFileSync(config.tls.certFile), key: readFileSync(config.tls.keyFile) }, route)
    : createHttpServer(route);
  // A browser's kept-alive connection must not hold the process at shutdown.
  server.keepAliveTimeout = 5000;
  const bound = await new Promise<number>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, config.host, () => {
      const address = server.address();
      resolve(typeof address === 'object' && address ? address.port : port);
    });
  });
  return {
    port: bound,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
        setTimeout(() => server.closeAllConnections(), config.shutdownGraceMs).unref();
      }),
  };
}
