// `node tools/deploy/check.mjs [--lint-only]`: checks the deployment files without Docker or a cluster.
//  1. Lints tools/deploy/Dockerfile (parsed with dockerfile-ast): named multi-stage build, pinned base
//     images, a non-root final stage with a grpc_health_probe HEALTHCHECK and an exec-form ENTRYPOINT.
//  2. Validates every object in tools/deploy/k8s against the Kubernetes schemas (kubernetes-models)
//     and checks that the files agree with each other and with the image.
//  3. Runs the Dockerfile's build and runtime steps in temporary folders (COPY as copies, RUN with sh,
//     ENV and the ConfigMap as the environment), then runs the migration job's command and the server
//     as uid 1000 against a fresh Postgres database (METERING_TEST_DATABASE_URL), asks grpc.health.v1
//     for SERVING, scrapes /metrics and stops it with SIGTERM. The probe stage (go install) needs the
//     Go module proxy, which this machine cannot reach: it is reported as skipped.
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { DockerfileParser } from 'dockerfile-ast';
import pg from 'pg';
import { parseAllDocuments } from 'yaml';

const root = join(import.meta.dirname, '..', '..');
const here = import.meta.dirname;
const problems = [];
const check = (ok, what) => {
  if (!ok) problems.push(what);
  return ok;
};
const log = (msg) => process.stdout.write(`deploy check: ${msg}\n`);

// 1. The Dockerfile.
/** An ENV or ARG argument as [name, value] (the value may hold '=' itself: NODE_OPTIONS=--flag=value). */
const assignment = (text) => [text.slice(0, text.indexOf('=')), text.slice(text.indexOf('=') + 1)];
const dockerfile = DockerfileParser.parse(readFileSync(join(here, 'Dockerfile'), 'utf8'));
const firstFrom = dockerfile.getInstructions().findIndex((i) => i.getKeyword() === 'FROM');
const args = Object.fromEntries(dockerfile.getInstructions().slice(0, firstFrom).filter((i) => i.getKeyword() === 'ARG').map((i) => assignment(i.getArgumentsContent())));
const stages = [];
for (const instruction of dockerfile.getInstructions()) {
  const kw = instruction.getKeyword();
  if (kw === 'FROM') {
    const [image, as, name] = instruction.getArguments().map((a) => a.getValue());
    stages.push({ image: image.replace(/^\$\{(\w+)\}$/, (_, a) => args[a] ?? image), name: as?.toUpperCase() === 'AS' ? name : undefined, steps: [], env: {}, args: {} });
  } else if (stages.length) {
    stages.at(-1).steps.push(instruction);
  }
}
check(stages.length >= 3 && stages.every((s) => s.name), 'Dockerfile: a multi-stage build with named stages (probe, build, runtime)');
for (const s of stages) check(/:[0-9][\w.-]*$/.test(s.image) && !s.image.endsWith(':latest'), `Dockerfile: base image ${s.image} is pinned to a version`);
const runtime = stages.at(-1);
const final = (kw) => runtime.steps.filter((i) => i.getKeyword() === kw);
const user = final('USER').at(-1)?.getArgumentsContent() ?? 'root';
check(!/^(root|0)(:|$)/.test(user), `Dockerfile: the runtime stage runs as a non-root user (USER ${user})`);
check(final('HEALTHCHECK').some((i) => i.getArgumentsContent().includes('grpc_health_probe')), 'Dockerfile: HEALTHCHECK uses grpc_health_probe');
check(final('COPY').some((i) => i.getArgumentsContent().includes('grpc_health_probe')), 'Dockerfile: grpc_health_probe is copied into the image');
const entrypoint = final('ENTRYPOINT').at(-1);
check(entrypoint && entrypoint.getArgumentsContent().trim().startsWith('['), 'Dockerfile: ENTRYPOINT in exec form (signals reach node)');
for (const [n, s] of stages.entries()) {
  for (const i of s.steps.filter((x) => x.getKeyword() === 'COPY')) {
    const from = i.getFromFlag?.()?.getValue();
    if (from) check(stages.slice(0, n).some((p) => p.name === from), `Dockerfile: COPY --from=${from} names an earlier stage`);
  }
}
const envOf = (stage) => Object.fromEntries(stage.steps.filter((i) => i.getKeyword() === 'ENV').flatMap((i) => i.getArguments().map((a) => assignment(a.getValue()))));
const imageEnv = envOf(runtime);
check(final('EXPOSE').some((i) => i.getArgumentsContent().split(/\s+/).includes(imageEnv.PORT)), `Dockerfile: EXPOSE includes PORT ${imageEnv.PORT}`);
log(`Dockerfile: ${stages.length} stages (${stages.map((s) => `${s.name} from ${s.image}`).join(', ')}), runtime user ${user}`);

// 2. The manifests.
const objects = [];
for (const file of readdirSync(join(here, 'k8s')).filter((f) => f.endsWith('.yaml')).sort()) {
  for (const doc of parseAllDocuments(readFileSync(join(here, 'k8s', file), 'utf8'))) {
    check(doc.errors.length === 0, `${file}: YAML parses (${doc.errors.map((e) => e.message).join('; ')})`);
    const obj = doc.toJS();
    if (!obj) continue;
    const [group, version] = obj.apiVersion.includes('/') ? obj.apiVersion.split('/') : ['', obj.apiVersion];
    const module = await import(`kubernetes-models/${group ? `${group}/${version}` : version}`);
    try {
      new module[obj.kind](obj).validate();
    } catch (err) {
      check(false, `${file}: ${obj.kind} ${obj.metadata?.name} matches the Kubernetes schema: ${err.message}`);
    }
    objects.push({ file, obj });
  }
}
const find = (kind) => objects.find((o) => o.obj.kind === kind)?.obj;
const deployment = find('Deployment');
const job = find('Job');
const configMap = find('ConfigMap');
const service = find('Service');
const pdb = find('PodDisruptionBudget');
if (check(deployment && job && configMap && service && pdb, 'k8s: a Deployment, a migration Job, a ConfigMap, a Service and a PodDisruptionBudget')) {
  const pod = deployment.spec.template.spec;
  const container = pod.containers[0];
  const grpcPort = container.ports.find((p) => p.name === 'grpc')?.containerPort;
  check(deployment.spec.replicas >= 2, 'k8s: several replicas');
  check(pdb.spec.minAvailable < deployment.spec.replicas, 'k8s: the disruption budget leaves room to drain a node');
  for (const probe of ['readinessProbe', 'livenessProbe', 'startupProbe']) check(container[probe]?.grpc?.port === grpcPort, `k8s: ${probe} is a gRPC probe on the grpc port`);
  check(String(grpcPort) === configMap.data.PORT && configMap.data.PORT === imageEnv.PORT, 'k8s: the grpc port agrees with the ConfigMap PORT and the image');
  check(String(container.ports.find((p) => p.name === 'metrics')?.containerPort) === configMap.data.METERING_METRICS_PORT, 'k8s: the metrics port agrees with the ConfigMap');
  check(String(container.ports.find((p) => p.name === 'http')?.containerPort) === configMap.data.METERING_HTTP_PORT && configMap.data.METERING_HTTP_PORT === imageEnv.METERING_HTTP_PORT, 'k8s: the HTTP port agrees with the ConfigMap and the image');
  check(pod.securityContext?.runAsNonRoot === true && job.spec.template.spec.securityContext?.runAsNonRoot === true, 'k8s: pods run as non-root');
  check(job.spec.template.spec.containers[0].image === container.image, 'k8s: the migration job runs the same image');
  check(JSON.stringify(job.spec.template.spec.containers[0].args) === '["--migrate-only"]', 'k8s: the migration job runs --migrate-only');
  check(configMap.data.METERING_AUTH === 'keys', 'k8s: API keys are required');
  const heapMb = Number(/--max-old-space-size=(\d+)/.exec(imageEnv.NODE_OPTIONS ?? '')?.[1]);
  const limit = container.resources?.limits?.memory ?? '';
  const limitMib = Number(/^(\d+)Mi$/.exec(limit)?.[1] ?? Number(/^(\d+)Gi$/.exec(limit)?.[1]) * 1024);
  check(heapMb > 0 && limitMib >= heapMb + 128, `k8s: the memory limit (${limit || 'none'}) leaves 128 MiB above the image's heap limit (NODE_OPTIONS ${imageEnv.NODE_OPTIONS ?? 'unset'})`);
  const grace = Number(configMap.data.METERING_SHUTDOWN_GRACE_MS) / 1000 + (container.lifecycle?.preStop?.sleep?.seconds ?? 0);
  check(pod.terminationGracePeriodSeconds > grace, `k8s: terminationGracePeriodSeconds exceeds the shutdown grace plus preStop (${grace} s)`);
  for (const c of [container, job.spec.template.spec.containers[0]]) {
    const refs = c.envFrom.map((e) => e.configMapRef?.name ?? e.secretRef?.name);
    check(refs.includes(configMap.metadata.name) && refs.includes('metering-secrets'), `k8s: ${c.name} takes the ConfigMap and the Secret metering-secrets`);
  }
  const labels = deployment.spec.template.metadata.labels;
  check(Object.entries(service.spec.selector).every(([k, v]) => labels[k] === v), 'k8s: the Service selects the Deployment pods');
  check(service.spec.ports.every((p) => container.ports.some((cp) => cp.name === p.targetPort)), 'k8s: Service target ports exist on the container');
  log(`k8s: ${objects.length} objects valid (${objects.map((o) => `${o.obj.kind}/${o.obj.metadata.name}`).join(', ')})`);
}

// 3. The same steps outside Docker.
if (!process.argv.includes('--lint-only') && problems.length === 0) {
  const work = mkdtempSync(join(tmpdir(), 'metering-deploy-'));
  chmodSync(work, 0o755);
  const pathIn = (stage, p) => join(work, stage, p);
  const ignore = readFileSync(join(root, '.dockerignore'), 'utf8').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  const ignored = (rel) => ignore.some((pattern) => (pattern.startsWith('*.') ? rel.endsWith(pattern.slice(1)) : rel === pattern || rel.startsWith(`${pattern}/`)));
  const dbUrl = process.env.METERING_TEST_DATABASE_URL;
  let database;
  try {
    for (const stage of stages) {
      let workdir = '/';
      const env = { PATH: process.env.PATH, HOME: process.env.HOME ?? '/root', ...Object.fromEntries(stage.steps.filter((i) => i.getKeyword() === 'ARG').map((i) => assignment(i.getArgumentsContent()))) };
      if (stage.image.startsWith('golang')) {
        log(`stage ${stage.name}: skipped (go install needs the Go module proxy, unreachable here)`);
        continue;
      }
      for (const i of stage.steps) {
        const kw = i.getKeyword();
        const argv = i.getArguments().map((a) => a.getValue());
        if (kw === 'WORKDIR') {
          workdir = argv[0];
          mkdirSync(pathIn(stage.name, workdir), { recursive: true });
        } else if (kw === 'ENV') {
          Object.assign(env, Object.fromEntries(argv.map(assignment)));
        } else if (kw === 'COPY') {
          const from = i.getFromFlag?.()?.getValue();
          const [src, dest] = argv;
          const target = dest.startsWith('/') ? pathIn(stage.name, dest) : pathIn(stage.name, join(workdir, dest));
          if (!from) {
            const files = execFileSync('git', ['ls-files', '--cached', '--others', '--exclude-standard'], { cwd: root, encoding: 'utf8' }).split('\n').filter((f) => f && !ignored(f));
            for (const f of files) cpSync(join(root, f), join(target, f), { recursive: true });
          } else if (stages.find((s) => s.name === from)?.image.startsWith('golang')) {
            log(`stage ${stage.name}: COPY --from=${from} ${src} skipped (stage skipped)`);
          } else {
            mkdirSync(dirname(target), { recursive: true });
            cpSync(pathIn(from, src), target, { recursive: true });
          }
        } else if (kw === 'RUN') {
          log(`stage ${stage.name}: RUN ${i.getArgumentsContent()}`);
          execFileSync('sh', ['-c', i.getArgumentsContent()], { cwd: pathIn(stage.name, workdir), env, stdio: ['ignore', 'inherit', 'inherit'] });
        }
      }
      stage.workdir = workdir;
      stage.env = env;
    }
    if (!check(dbUrl, 'METERING_TEST_DATABASE_URL names a Postgres server for the runtime check')) throw new Error('no database');
    const admin = new pg.Client({ connectionString: dbUrl });
    await admin.connect();
    database = `metering_deploy_${randomBytes(4).toString('hex')}`;
    await admin.query(`CREATE DATABASE ${database}`);
    await admin.end();
    const url = new URL(dbUrl);
    url.pathname = `/${database}`;
    const app = pathIn(runtime.name, runtime.workdir);
    execFileSync('chmod', ['-R', 'a+rX', work]);
    const [grpcPort, metricsPort, httpPort] = [await freePort(), await freePort(), await freePort()];
    const env = { ...runtime.env, ...configMap.data, DATABASE_URL: url.toString(), METERING_OPERATOR_KEY: randomBytes(32).toString('base64url'), PORT: String(grpcPort), METERING_METRICS_PORT: String(metricsPort), METERING_HTTP_PORT: String(httpPort) };
    const [cmd, ...cmdArgs] = JSON.parse(entrypoint.getArgumentsContent());
    const asUser = process.getuid?.() === 0 ? { uid: 1000, gid: 1000 } : {};
    log(`runtime: the migration job (${[cmd, ...cmdArgs, ...job.spec.template.spec.containers[0].args].join(' ')}) as uid 1000`);
    execFileSync(cmd, [...cmdArgs, ...job.spec.template.spec.containers[0].args], { cwd: app, env, stdio: ['ignore', 'inherit', 'inherit'], ...asUser });
    log('runtime: the server as uid 1000');
    const server = spawn(cmd, cmdArgs, { cwd: app, env, stdio: ['ignore', 'pipe', 'inherit'], ...asUser });
    const exited = new Promise((resolve) => server.once('exit', (code) => resolve(code)));
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('the server did not listen within 30 s')), 30_000);
      server.stdout.on('data', (d) => {
        process.stdout.write(d);
        if (d.toString().includes('"msg":"listening"')) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
    const buf = join(root, 'node_modules', '.bin', 'buf');
    const health = execFileSync(buf, ['curl', '--protocol', 'grpc', '--http2-prior-knowledge', '-d', '{"service":"metering.v1.MeteringService"}', `http://127.0.0.1:${grpcPort}/grpc.health.v1.Health/Check`], { encoding: 'utf8' });
    check(JSON.parse(health).status === 'SERVING', `runtime: grpc.health.v1 answers SERVING (${health.trim()})`);
    const metrics = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
    check(metrics.status === 200 && (await metrics.text()).includes('metering_rpc_requests_total'), 'runtime: /metrics serves Prometheus metrics');
    server.kill('SIGTERM');
    check((await exited) === 0, 'runtime: SIGTERM stops the server with exit code 0');
  } finally {
    rmSync(work, { recursive: true, force: true });
    if (database) {
      const admin = new pg.Client({ connectionString: dbUrl });
      await admin.connect();
      await admin.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
      await admin.end();
    }
  }
}

function freePort() {
  return new Promise((resolve) => {
    import('node:net').then(({ createServer }) => {
      const s = createServer().listen(0, '127.0.0.1', () => {
        const { port } = s.address();
        s.close(() => resolve(port));
      });
    });
  });
}

if (problems.length) {
  for (const p of problems) process.stdout.write(`FAILED ${p}\n`);
  process.exit(1);
}
log('all checks passed');
