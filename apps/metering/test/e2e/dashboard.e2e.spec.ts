import { type GetDailyUsageResponse, LimitEnforcement, LimitMeasure, LimitPeriod, type ListAccountsResponse, type ListLimitsResponse, type ListReservationsResponse } from '@metering/contracts';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { type Browser, chromium, type Page } from 'playwright-core';
import { TestDatabase, embeddedTarget } from '../support/databases';
import { bearer, call } from '../support/grpc';
import { chargeRequest, checkRequest } from '../support/requests';
import { buildServer, ROOT, ServerProcess, startServer } from '../support/server-process';

/**
 * Issue 19: the dashboard in a real browser (Debian's Chromium through playwright-core) against
 * the real server: a wrong key is refused; signed in, the numbers on the page equal the
 * GetDailyUsage and ListLimits answers for seeded data; the chart renders (its screenshot's size
 * is checked); a charge recorded through gRPC appears in the live view. The screenshots go to
 * METERING_SCREENSHOT_DIR (tools/dashboard/screenshots.mjs points it at docs/screenshots for the
 * README), else dist/screenshots.
 */
const CHROMIUM = process.env.METERING_CHROMIUM || '/usr/bin/chromium';
const SHOTS = process.env.METERING_SCREENSHOT_DIR || join(ROOT, 'dist', 'screenshots');

beforeAll(() => {
  buildServer();
  execFileSync(process.execPath, [join(ROOT, 'node_modules', 'vite', 'bin', 'vite.js'), 'build', '--config', join(ROOT, 'apps', 'dashboard', 'vite.config.mjs'), '--logLevel', 'warn'], { stdio: 'inherit' });
  mkdirSync(SHOTS, { recursive: true });
});

const day = (offset: number) => new Date(Date.now() + offset * 86_400_000).toISOString().slice(0, 10);
/** What the page shows for an exact decimal: thousands separators, nothing rounded. */
const shown = (amount: string, usd = false) => {
  const [whole, fraction] = amount.split('.');
  return `${usd ? '$' : ''}${whole.replace(/\B(?=(\d{3})+(?!\d))/g, ',')}${fraction ? `.${fraction}` : ''}`;
};

/** The width and height of a PNG, from its IHDR chunk. */
const pngSize = (png: Buffer) => ({ width: png.readUInt32BE(16), height: png.readUInt32BE(20) });

describe.each(embeddedTarget())('the dashboard in Chromium on $name', (target) => {
  const operatorKey = randomBytes(32).toString('base64url');
  let tdb: TestDatabase;
  let server: ServerProcess;
  let browser: Browser;
  let page: Page;
  let apiKey: string;
  /** Uncaught errors of the page's script (e.g. a view writing to elements of a page it has left). */
  const pageErrors: string[] = [];
  const from = day(-6);
  const to = day(0);

  beforeAll(async () => {
    tdb = await target.create();
    server = await startServer(tdb.config, { METERING_AUTH: 'keys', METERING_OPERATOR_KEY: operatorKey, METERING_HTTP_PORT: '0' });
    const op = bearer(operatorKey);
    apiKey = (await call(server.client.createApiKey, server.client, { accountId: 'acme', name: 'dashboard', scopes: [1, 2, 3] }, op)).secret;
    // A week of usage: three users, three models (one without a price), several charges a day.
    const models = [['openai', 'gpt-4o'], ['anthropic', 'claude-3-5-sonnet-20241022'], ['selfhosted', 'llama-local']];
    let n = 0;
    for (let d = -6; d <= 0; d++) {
      for (let k = 0; k < 3 + (d % 2 === 0 ? 2 : 0); k++) {
        const [provider, model] = models[n % 3];
        const usage = Date.parse(`${day(d)}T${String(8 + k).padStart(2, '0')}:00:00Z`);
        await call(server.client.recordCharge, server.client, chargeRequest({
          idempotencyKey: `seed-${n}`, userId: ['alice', 'bob', 'carol'][Math.floor(n / 3) % 3], provider, model,
          promptTokens: String(1000 + 137 * n), completionTokens: String(200 + 31 * n), usageTime: { seconds: String(Math.min(usage, Date.now() - 60_000) / 1000 | 0), nanos: 0 },
        }), op);
        n++;
      }
    }
    await call(server.client.putLimit, server.client, { accountId: 'acme', userId: '', period: LimitPeriod.LIMIT_PERIOD_MONTH, measure: LimitMeasure.LIMIT_MEASURE_COST, amount: '2.5', enforcement: LimitEnforcement.LIMIT_ENFORCEMENT_HARD }, op);
    await call(server.client.putLimit, server.client, { accountId: 'acme', userId: 'alice', period: LimitPeriod.LIMIT_PERIOD_DAY, measure: LimitMeasure.LIMIT_MEASURE_TOKENS, amount: '50000', enforcement: LimitEnforcement.LIMIT_ENFORCEMENT_SOFT }, op);
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-dev-shm-usage'],
    });
    page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.on('pageerror', (e) => pageErrors.push(e.message));
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await server?.stop();
    await tdb?.drop();
  });

  it('refuses a wrong API key on the sign-in page', async () => {
    await page.goto(`${server.httpUrl}/`);
    await page.fill('#key', `mk.${Buffer.from('acme').toString('base64url')}.k_000000000000.${randomBytes(32).toString('base64url')}`);
    await page.click('button[type=submit]');
    await page.getByTestId('signin-error').getByText('This API key was refused').waitFor();
    await page.screenshot({ path: join(SHOTS, 'dashboard-signin.png') });
  });

  it('signs in and shows exactly the GetDailyUsage totals and every ListLimits row', async () => {
    await page.fill('#key', apiKey);
    await page.click('button[type=submit]');
    await page.getByTestId('account').getByText('acme').waitFor();
    await page.fill('#from', from);
    await page.dispatchEvent('#from', 'change');
    // Wait for the chosen range itself: the page first showed the month so far, whose totals are the
    // same whenever the month began before the seeded week (from the 8th of a month on).
    await page.locator('#unpriced-hint', { hasText: `--from ${from} --to ${to}` }).waitFor();
    const usage: GetDailyUsageResponse = await call(server.client.getDailyUsage, server.client, { accountId: 'acme', startDate: from, endDate: to, userId: '', provider: '', model: '', chargeType: 0, pageSize: 1000, pageToken: '', timeZone: '' }, bearer(apiKey));
    await page.getByTestId('total-cost').getByText(shown(usage.totals!.totalCost!.amount, true), { exact: true }).waitFor();
    expect(await page.getByTestId('total-messages').textContent()).toBe(shown(usage.totals!.messageCount));
    expect(await page.getByTestId('total-tokens').textContent()).toBe(shown(usage.totals!.tokens!.totalTokens));
    expect(await page.getByTestId('unpriced').textContent()).toBe(shown(usage.totals!.unpricedMessageCount));
    expect(Number(usage.totals!.unpricedMessageCount)).toBeGreaterThan(0);
    expect(await page.locator('#unpriced-hint').textContent()).toContain(`npx metering rerate --account acme --from ${from} --to ${to}`);

    const limits: ListLimitsResponse = await call(server.client.listLimits, server.client, { accountId: 'acme', userId: '', pageSize: 1000, pageToken: '' }, bearer(apiKey));
    const rows = page.getByTestId('limit');
    await rows.nth(limits.limits.length - 1).waitFor();
    expect(await rows.count()).toBe(limits.limits.length);
    for (const [i, l] of limits.limits.entries()) {
      const usd = l.limit!.measure === LimitMeasure.LIMIT_MEASURE_COST;
      const row = rows.nth(i);
      expect([await row.getByTestId('limit-used').textContent(), await row.getByTestId('limit-reserved').textContent(), await row.getByTestId('limit-remaining').textContent(), await row.getByTestId('limit-amount').textContent()])
        .toEqual([shown(l.used, usd), shown(l.reserved, usd), shown(l.remaining, usd), shown(l.limit!.amount, usd)]);
      expect(await row.locator('.tag').textContent()).toBe(l.limit!.enforcement === LimitEnforcement.LIMIT_ENFORCEMENT_SOFT ? 'soft' : 'hard');
    }
  });

  it('draws the stacked chart per day, switchable by user', async () => {
    const canvas = page.getByTestId('chart').locator('canvas');
    await canvas.waitFor();
    const shot = await page.getByTestId('chart').screenshot();
    const size = pngSize(shot);
    expect(size.width).toBeGreaterThan(600);
    expect(size.height).toBeGreaterThan(250);
    // Three models in the legend, then three users.
    expect(await page.locator('.u-legend .u-series').count()).toBe(1 + 3);
    await page.selectOption('#group', 'user');
    await page.locator('.u-legend .u-series', { hasText: 'carol' }).waitFor();
    expect(await page.locator('.u-legend .u-series').count()).toBe(1 + 3);
    await page.selectOption('#group', 'model');
    await page.locator('.u-legend .u-series', { hasText: 'openai/gpt-4o' }).waitFor();
    await page.screenshot({ path: join(SHOTS, 'dashboard.png'), fullPage: true });
  });

  it('shows a charge recorded through gRPC in the live view', async () => {
    // The page's stream starts "from now" when the page renders: probe charges until one shows, so
    // the stream is known to be open before the charge looked for is recorded.
    const events = page.getByTestId('live-event');
    for (let n = 0; n < 40 && (await events.count()) === 0; n++) {
      await call(server.client.recordCharge, server.client, chargeRequest({ accountId: '', idempotencyKey: `probe-${n}`, userId: 'probe' }), bearer(apiKey));
      await events.first().waitFor({ timeout: 500 }).catch(() => undefined);
    }
    await call(server.client.recordCharge, server.client, chargeRequest({ accountId: '', idempotencyKey: 'live-1', userId: 'live-user' }), bearer(apiKey));
    const event = page.getByTestId('live-event').filter({ hasText: 'live-user openai/gpt-4o 300 tokens $0.00225' });
    await event.waitFor({ timeout: 15_000 });
    expect(await event.textContent()).toMatch(/^#\d+ charge recorded: live-user openai\/gpt-4o 300 tokens \$0\.00225$/);
  });

  it('shows open reservations as ListReservations lists them', async () => {
    for (const [key, userId, tokens] of [['hold-1', 'alice', '1200'], ['hold-2', 'bob', '800']] as const) {
      await call(server.client.checkLimits, server.client, checkRequest({ accountId: 'acme', userId, reserve: true, idempotencyKey: key, additionalTokens: tokens, holdSeconds: 600 }), bearer(apiKey));
    }
    await page.click('#refresh');
    const listed: ListReservationsResponse = await call(server.client.listReservations, server.client, { accountId: 'acme', userId: '', pageSize: 100, pageToken: '' }, bearer(apiKey));
    expect(listed.reservations).toHaveLength(2);
    const rows = page.getByTestId('reservation');
    await rows.nth(1).waitFor();
    for (const [i, r] of listed.reservations.entries()) {
      expect(await rows.nth(i).textContent()).toContain(`${r.userId}${shown(r.heldTokens)}${shown(r.heldCost!.amount, true)}`);
      expect(await rows.nth(i).textContent()).toContain(r.reservationId);
    }
  });

  it('shows the days of a chosen time zone, summed as GetDailyUsage sums them in that zone', async () => {
    const zone = 'Etc/GMT+12'; // UTC-12: the first day's 08:00 UTC charges fall on the day before the range
    await page.fill('#tz', zone);
    await page.dispatchEvent('#tz', 'change');
    await page.getByTestId('zone-shown').getByText(`days in ${zone} (the account's: UTC)`).waitFor();
    const inZone: GetDailyUsageResponse = await call(server.client.getDailyUsage, server.client, { accountId: 'acme', startDate: from, endDate: to, userId: '', provider: '', model: '', chargeType: 0, pageSize: 1000, pageToken: '', timeZone: zone }, bearer(apiKey));
    const own: GetDailyUsageResponse = await call(server.client.getDailyUsage, server.client, { accountId: 'acme', startDate: from, endDate: to, userId: '', provider: '', model: '', chargeType: 0, pageSize: 1000, pageToken: '', timeZone: '' }, bearer(apiKey));
    // The same range in another zone covers other hours: the page shows that zone's totals.
    expect(inZone.totals!.messageCount).not.toBe(own.totals!.messageCount);
    await page.getByTestId('total-messages').getByText(shown(inZone.totals!.messageCount), { exact: true }).waitFor();
    expect(await page.getByTestId('total-cost').textContent()).toBe(shown(inZone.totals!.totalCost!.amount, true));
    await page.fill('#tz', 'UTC');
    await page.dispatchEvent('#tz', 'change');
    await page.getByTestId('total-messages').getByText(shown(own.totals!.messageCount), { exact: true }).waitFor();
  });

  it('lists every account to the operator with its month to date, and opens one', async () => {
    await call(server.client.recordCharge, server.client, chargeRequest({ accountId: 'globex', idempotencyKey: 'g1', userId: 'gina' }), bearer(operatorKey));
    const listed: ListAccountsResponse = await call(server.client.listAccounts, server.client, { accountIdPrefix: '', pageSize: 1000, pageToken: '' }, bearer(operatorKey));
    expect(listed.accounts.map((a) => a.account!.accountId)).toEqual(['acme', 'globex']);
    await page.click('#signout');
    await page.fill('#key', operatorKey);
    await page.click('button[type=submit]');
    const rows = page.getByTestId('account-row');
    await rows.nth(1).waitFor();
    for (const [i, a] of listed.accounts.entries()) {
      expect(await rows.nth(i).locator('a').textContent()).toBe(a.account!.accountId);
      expect(await rows.nth(i).getByTestId('account-cost').textContent()).toBe(shown(a.monthCost!.amount, true));
    }
    await page.screenshot({ path: join(SHOTS, 'dashboard-accounts.png') });
    await rows.nth(1).locator('a').click();
    await page.getByTestId('account').getByText('globex').waitFor();
    await page.click('#all-accounts');
    await page.getByTestId('accounts').waitFor();
  });

  it('raised no uncaught error in the page', () => {
    expect(pageErrors).toEqual([]);
  });
});
