import Decimal from 'decimal.js';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import { accountOfKey, Api, describeError, isUnauthenticated, type Json } from './api';
import { dec, escapeHtml, formatDecimal, formatUsd, share, sum } from './format';
import './style.css';

/**
 * The usage dashboard: signs in with an API key (kept in this tab's sessionStorage only), then
 * shows the account's spend and tokens per day as a stacked chart by model, provider, user or
 * charge type in the account's days or a chosen time zone, top users and models, every limit
 * with used / reserved / remaining, open reservations, unpriced charges, the live charge stream,
 * and the price catalogue with search. With the operator key (no account), the list of accounts.
 */

const KEY = 'metering.apiKey';
const ACCOUNT = 'metering.account';
const app = document.getElementById('app') as HTMLElement;
const today = () => new Date().toISOString().slice(0, 10);
const monthStart = () => `${today().slice(0, 8)}01`;
const PALETTE = ['#4e79a7', '#f28e2b', '#e15759', '#76b7b2', '#59a14f', '#edc948', '#b07aa1', '#ff9da7', '#9c755f', '#bab0ac'];
const GROUPS = { model: 'model', provider: 'provider', user: 'user', type: 'charge type' } as const;
type Group = keyof typeof GROUPS;
const nameOf = (value: string, prefix: string) => value.replace(prefix, '').toLowerCase();
const groupOf = (row: Json, group: Group): string =>
  group === 'model' ? `${row.provider}/${row.model}` : group === 'provider' ? row.provider : group === 'user' ? row.userId : nameOf(row.chargeType, 'CHARGE_TYPE_');

function signIn(message = ''): void {
  app.innerHTML = `
    <main class="signin">
      <h1>Metering</h1>
      <form id="signin">
        <label>API key <input id="key" type="password" autocomplete="off" placeholder="mk.… (empty when authentication is off)" /></label>
        <label>Account <input id="account" placeholder="from the key; empty with the operator key: every account" /></label>
        <button type="submit">Sign in</button>
        <p class="error" data-testid="signin-error">${escapeHtml(message)}</p>
        <p class="hint">The key stays in this browser tab only (session storage).</p>
      </form>
    </main>`;
  const form = document.getElementById('signin') as HTMLFormElement;
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const key = (document.getElementById('key') as HTMLInputElement).value.trim();
    const account = (document.getElementById('account') as HTMLInputElement).value.trim() || accountOfKey(key);
    void start(key, account);
  });
}

async function start(key: string, account: string): Promise<void> {
  const api = new Api(key);
  try {
    if (account === '') {
      // No account: the operator key (or authentication off) lists every account to choose from.
      const first = await api.call('ListAccounts', { pageSize: 1000 });
      sessionStorage.setItem(KEY, key);
      sessionStorage.removeItem(ACCOUNT);
      accounts(api, key, first);
      return;
    }
    // Proves the key (and that it may read this account) before anything is shown.
    const settings = await api.call('GetAccount', { accountId: account });
    sessionStorage.setItem(KEY, key);
    sessionStorage.setItem(ACCOUNT, account);
    render(api, account, settings.timeZone || 'UTC', () => void start(key, ''));
  } catch (err) {
    sessionStorage.removeItem(KEY);
    signIn(isUnauthenticated(err) ? 'This API key was refused (unknown, malformed or revoked).' : describeError(err));
  }
}

/** The operator's list of accounts with their month to date; choosing one opens its dashboard. */
function accounts(api: Api, key: string, page: Json): void {
  app.innerHTML = `
    <header><h1>Metering</h1><span data-testid="account">(operator)</span><button id="signout">Sign out</button></header>
    <section>
      <h2>Accounts</h2>
      <input id="account-search" placeholder="account id starts with" />
      <table id="accounts" data-testid="accounts"></table>
      <button id="more" hidden>More</button>
    </section>`;
  const table = document.getElementById('accounts') as HTMLElement;
  const more = document.getElementById('more') as HTMLButtonElement;
  let next = '';
  const show = (p: Json, append: boolean) => {
    const rows = p.accounts
      .map((a: Json) => {
        const cost = a.monthUnpricedMessageCount !== '0' && a.monthUnpricedMessageCount === a.monthMessageCount ? 'unpriced' : formatUsd(a.monthCost.amount);
        return `<tr data-testid="account-row"><td><a href="#" data-account="${escapeHtml(a.account.accountId)}">${escapeHtml(a.account.accountId)}</a></td><td>${escapeHtml(a.account.timeZone)}</td><td class="num" data-testid="account-cost">${cost}</td><td class="num">${formatDecimal(a.monthMessageCount)}</td><td class="num">${formatDecimal(a.monthUnpricedMessageCount)}</td><td class="muted">since ${escapeHtml(a.monthStart)}</td></tr>`;
      })
      .join('');
    table.innerHTML = `${append ? table.innerHTML : '<tr><th>account</th><th>time zone</th><th>spend this month</th><th>charges</th><th>unpriced</th><th></th></tr>'}${rows}`;
    next = p.nextPageToken;
    more.hidden = !next;
  };
  show(page, false);
  table.addEventListener('click', (event) => {
    const link = (event.target as HTMLElement).closest('a[data-account]');
    if (!link) return;
    event.preventDefault();
    void start(key, link.getAttribute('data-account') ?? '');
  });
  const search = document.getElementById('account-search') as HTMLInputElement;
  const load = (append: boolean) =>
    api.call('ListAccounts', { accountIdPrefix: search.value.trim(), pageSize: 1000, pageToken: append ? next : '' }).then((p) => show(p, append), (err) => (table.innerHTML = `<tr><td class="error">${escapeHtml(describeError(err))}</td></tr>`));
  search.addEventListener('input', () => void load(false));
  more.addEventListener('click', () => void load(true));
  (document.getElementById('signout') as HTMLElement).addEventListener('click', () => {
    sessionStorage.clear();
    signIn();
  });
}

function render(api: Api, account: string, timeZone: string, allAccounts: () => void): void {
  const operator = accountOfKey(sessionStorage.getItem(KEY) ?? '') === '';
  const zones = typeof Intl.supportedValuesOf === 'function' ? Intl.supportedValuesOf('timeZone') : [];
  app.innerHTML = `
    <header>
      <h1>Metering</h1>
      <span data-testid="account">${escapeHtml(account)}</span>
      <span class="muted" id="zone-shown" data-testid="zone-shown">days in ${escapeHtml(timeZone)}</span>
      ${operator ? '<button id="all-accounts">All accounts</button>' : ''}
      <button id="signout">Sign out</button>
    </header>
    <section class="controls">
      <label>From <input id="from" type="date" value="${monthStart()}" /></label>
      <label>To <input id="to" type="date" value="${today()}" /></label>
      <label>By <select id="group">${Object.entries(GROUPS).map(([v, label]) => `<option value="${v}">${label}</option>`).join('')}</select></label>
      <label>Show <select id="measure"><option value="cost">spend (USD)</option><option value="tokens">tokens</option></select></label>
      <label title="The account's days (as invoices and limits count) unless another zone is chosen">Days in <input id="tz" list="zones" value="${escapeHtml(timeZone)}" /></label>
      <datalist id="zones">${[...new Set([timeZone, Intl.DateTimeFormat().resolvedOptions().timeZone, 'UTC', ...zones])].map((z) => `<option value="${escapeHtml(z)}"></option>`).join('')}</datalist>
      <button id="refresh">Refresh</button>
    </section>
    <p class="error" id="error"></p>
    <section class="cards">
      <div><h3>Spend</h3><p data-testid="total-cost" id="total-cost"></p></div>
      <div><h3>Messages</h3><p data-testid="total-messages" id="total-messages"></p></div>
      <div><h3>Tokens</h3><p data-testid="total-tokens" id="total-tokens"></p></div>
      <div><h3>Unpriced</h3><p data-testid="unpriced" id="unpriced"></p><p class="hint" id="unpriced-hint"></p></div>
    </section>
    <section><h2>Per day</h2><div id="chart" data-testid="chart"></div></section>
    <section class="split">
      <div><h2>Top users</h2><table id="top-users" data-testid="top-users"></table></div>
      <div><h2>Top models</h2><table id="top-models" data-testid="top-models"></table></div>
    </section>
    <section><h2>Limits</h2><div id="limits" data-testid="limits"></div></section>
    <section><h2>Open reservations</h2><table id="reservations" data-testid="reservations"></table></section>
    <section><h2>Live charges</h2><ol id="live" data-testid="live" class="live"></ol></section>
    <section><h2>Prices</h2><input id="price-search" placeholder="search provider or model" /> <span class="muted" id="prices-count"></span><table id="prices" data-testid="prices"></table></section>`;
  const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
  $('signout').addEventListener('click', () => {
    sessionStorage.clear();
    live.abort();
    signIn();
  });
  if (operator)
    $('all-accounts').addEventListener('click', () => {
      live.abort();
      allAccounts();
    });
  let plot: uPlot | undefined;

  async function load(): Promise<void> {
    if (live.signal.aborted) return; // the page was left
    $('error').textContent = '';
    const [from, to] = [$<HTMLInputElement>('from').value, $<HTMLInputElement>('to').value];
    const group = $<HTMLSelectElement>('group').value as Group;
    const measure = $<HTMLSelectElement>('measure').value as 'cost' | 'tokens';
    // Another zone than the account's is summed by the server from the charges (GetDailyUsage time_zone).
    const zone = $<HTMLInputElement>('tz').value.trim() || timeZone;
    try {
      const rows: Json[] = [];
      let totals: Json;
      let pageToken = '';
      do {
        const page = await api.call('GetDailyUsage', { accountId: account, startDate: from, endDate: to, pageSize: 1000, pageToken, timeZone: zone === timeZone ? '' : zone });
        rows.push(...page.usage);
        totals = page.totals;
        pageToken = page.nextPageToken;
      } while (pageToken);
      $('total-cost').textContent = formatUsd(totals.totalCost.amount);
      $('total-messages').textContent = formatDecimal(totals.messageCount);
      $('total-tokens').textContent = formatDecimal(totals.tokens.totalTokens);
      const unpriced = Number(totals.unpricedMessageCount);
      $('unpriced').textContent = formatDecimal(totals.unpricedMessageCount);
      $('unpriced-hint').textContent = unpriced ? `${unpriced} charge(s) had no price: add one (npx metering prices set …), then npx metering rerate --account ${account || '<account>'} --from ${from} --to ${to}` : '';
      plot?.destroy();
      plot = chart($('chart'), rows, from, to, group, measure);
      tops($('top-users'), rows, (r) => r.userId, dec(totals.totalCost.amount));
      tops($('top-models'), rows, (r) => `${r.provider}/${r.model}`, dec(totals.totalCost.amount));
      $('zone-shown').textContent = `days in ${zone}${zone === timeZone ? '' : ` (the account's: ${timeZone})`}`;
      await Promise.all([limits(), reservations()]);
    } catch (err) {
      if (!live.signal.aborted) $('error').textContent = describeError(err);
    }
  }

  async function limits(): Promise<void> {
    const page = await api.call('ListLimits', { accountId: account, pageSize: 1000 });
    $('limits').innerHTML = page.limits.length
      ? page.limits
          .map((l: Json) => {
            const amount = dec(l.limit.amount);
            const pct = (v: string) => (amount.isZero() ? 0 : Decimal.min(100, dec(v).div(amount).times(100)).toNumber());
            const soft = l.limit.enforcement === 'LIMIT_ENFORCEMENT_SOFT';
            const unit = l.limit.measure === 'LIMIT_MEASURE_COST' ? formatUsd : formatDecimal;
            return `<div class="limit${l.exceeded ? ' exceeded' : ''}" data-testid="limit">
              <div class="limit-head"><b>${escapeHtml(l.limit.userId || 'account')}</b> ${nameOf(l.limit.period, 'LIMIT_PERIOD_')} ${nameOf(l.limit.measure, 'LIMIT_MEASURE_')}
                <span class="tag ${soft ? 'soft' : 'hard'}">${soft ? 'soft' : 'hard'}</span> limit <span data-testid="limit-amount">${unit(l.limit.amount)}</span></div>
              <div class="bar"><span class="used" style="width:${pct(l.used)}%"></span><span class="reserved" style="width:${Math.min(100 - pct(l.used), pct(l.reserved))}%"></span></div>
              <div class="muted">used <span data-testid="limit-used">${unit(l.used)}</span> · reserved <span data-testid="limit-reserved">${unit(l.reserved)}</span> · remaining <span data-testid="limit-remaining">${unit(l.remaining)}</span> · since ${escapeHtml(l.periodStart)}${l.exceeded ? ' · <b>exceeded</b>' : ''}</div>
            </div>`;
          })
          .join('')
      : '<p class="muted">No limits set.</p>';
  }

  async function reservations(): Promise<void> {
    const page = await api.call('ListReservations', { accountId: account, pageSize: 100 });
    $('reservations').innerHTML = page.reservations.length
      ? `<tr><th>user</th><th>held tokens</th><th>held cost</th><th>expires</th><th>reservation</th></tr>${page.reservations
          .map((r: Json) => `<tr data-testid="reservation"><td>${escapeHtml(r.userId)}</td><td class="num">${formatDecimal(r.heldTokens)}</td><td class="num">${formatUsd(r.heldCost.amount)}</td><td>${escapeHtml(r.expireTime)}</td><td class="muted">${escapeHtml(r.reservationId)}</td></tr>`)
          .join('')}${page.nextPageToken ? '<tr><td class="muted" colspan="5">… more than 100 open</td></tr>' : ''}`
      : '<tr><td class="muted">No open reservations.</td></tr>';
  }

  // The live charge stream, from now on (reconnects after a drop, from the last event seen).
  const live = new AbortController();
  void (async () => {
    let after: string | undefined;
    while (!live.signal.aborted) {
      try {
        // Where the stream starts (x-start-after-sequence): shown, and the cursor if it drops before an event.
        const started = (headers: Headers) => {
          const start = headers.get('x-start-after-sequence');
          if (start === null) return;
          after ??= start;
          $('live').dataset.startedAfter = start;
        };
        for await (const m of api.stream('WatchCharges', { accountId: account, ...(after ? { afterSequence: after } : {}) }, live.signal, started)) {
          after = m.event.sequence;
          const li = document.createElement('li');
          li.dataset.testid = 'live-event';
          li.textContent = describeEvent(m.event);
          $('live').prepend(li);
          while ($('live').children.length > 50) $('live').lastElementChild?.remove();
        }
      } catch (err) {
        if (live.signal.aborted) return;
        $('error').textContent = `live stream: ${describeError(err)} (reconnecting)`;
        await new Promise((r) => setTimeout(r, 2000));
      }
    }
  })();

  let catalogue: Json[] = [];
  const showPrices = () => {
    const q = $<HTMLInputElement>('price-search').value.trim().toLowerCase();
    const matching = catalogue.filter((p) => `${p.provider}/${p.model}`.toLowerCase().includes(q));
    const found = matching.slice(0, 15);
    $('prices-count').textContent = `${found.length} of ${matching.length} matching models (of ${catalogue.length})`;
    $('prices').innerHTML = `<tr><th>model</th><th>input / 1M</th><th>output / 1M</th><th>version</th></tr>${found
      .map((p) => `<tr><td>${escapeHtml(`${p.provider}/${p.model}`)}</td><td class="num">${formatUsd(p.rates.inputPerMillion)}</td><td class="num">${formatUsd(p.rates.outputPerMillion)}</td><td class="muted">${escapeHtml(p.version)}</td></tr>`)
      .join('')}`;
  };
  $('price-search').addEventListener('input', showPrices);
  // The catalogue is large: the page may have been left (signed out, another account) before it arrives.
  void api.call('ListModels', { accountId: account }).then(
    (r) => {
      if (live.signal.aborted) return;
      catalogue = r.prices;
      showPrices();
    },
    (err) => {
      if (!live.signal.aborted) $('error').textContent = describeError(err);
    },
  );

  for (const id of ['refresh', 'group', 'measure', 'from', 'to', 'tz']) $(id).addEventListener(id === 'refresh' ? 'click' : 'change', () => void load());
  void load();
}

function describeEvent(e: Json): string {
  const kind = nameOf(e.kind, 'CHARGE_EVENT_KIND_').replace(/_/g, ' ');
  if (e.charge) {
    const c = e.charge;
    const cost = c.pricingStatus === 'PRICING_STATUS_UNPRICED' ? 'unpriced' : formatUsd(c.totalCost.amount);
    return `#${e.sequence} ${kind}: ${c.userId} ${c.provider}/${c.model} ${formatDecimal(c.tokens.totalTokens)} tokens ${cost}`;
  }
  if (e.reservation) return `#${e.sequence} ${kind}: ${e.reservation.userId} held ${formatDecimal(e.reservation.heldTokens)} tokens`;
  if (e.limit) return `#${e.sequence} ${kind}: ${e.userId} ${nameOf(e.limit.period, 'LIMIT_PERIOD_')} ${nameOf(e.limit.measure, 'LIMIT_MEASURE_')} used ${e.limit.used} of ${e.limit.limit}`;
  return `#${e.sequence} ${kind}`;
}

/** Top entries by spend, with their share of the total (exact decimal sums). */
function tops(table: HTMLElement, rows: Json[], key: (r: Json) => string, total: Decimal): void {
  const by = new Map<string, { cost: Decimal; tokens: Decimal; messages: Decimal; unpriced: Decimal }>();
  for (const r of rows) {
    const entry = by.get(key(r)) ?? { cost: new Decimal(0), tokens: new Decimal(0), messages: new Decimal(0), unpriced: new Decimal(0) };
    entry.cost = entry.cost.plus(dec(r.sums.totalCost.amount));
    entry.tokens = entry.tokens.plus(dec(r.sums.tokens.totalTokens));
    entry.messages = entry.messages.plus(dec(r.sums.messageCount));
    entry.unpriced = entry.unpriced.plus(dec(r.sums.unpricedMessageCount));
    by.set(key(r), entry);
  }
  // A cost of charges without a price is unknown, not 0.
  const costOf = (v: { cost: Decimal; messages: Decimal; unpriced: Decimal }) =>
    v.unpriced.equals(v.messages) ? 'unpriced' : v.unpriced.isZero() ? formatUsd(v.cost) : `${formatUsd(v.cost)} +${v.unpriced.toFixed()} unpriced`;
  const sorted = [...by].sort((a, b) => b[1].cost.comparedTo(a[1].cost) || b[1].tokens.comparedTo(a[1].tokens)).slice(0, 10);
  table.innerHTML = `<tr><th></th><th>spend</th><th>share</th><th>tokens</th></tr>${sorted
    .map(([name, v]) => `<tr><td>${escapeHtml(name)}</td><td class="num">${costOf(v)}</td><td class="num">${share(v.cost, total)}</td><td class="num">${formatDecimal(v.tokens)}</td></tr>`)
    .join('')}`;
}

/** Spend or tokens per day, stacked by group (exact sums per bar; the bar heights are the only floats). */
function chart(el: HTMLElement, rows: Json[], from: string, to: string, group: Group, measure: 'cost' | 'tokens'): uPlot {
  const days: string[] = [];
  for (let t = Date.parse(`${from}T00:00:00Z`); t <= Date.parse(`${to}T00:00:00Z`) && days.length < 400; t += 86_400_000) days.push(new Date(t).toISOString().slice(0, 10));
  const groups = new Map<string, Map<string, Decimal>>();
  for (const r of rows) {
    const g = groupOf(r, group);
    const perDay = groups.get(g) ?? new Map<string, Decimal>();
    perDay.set(r.date, (perDay.get(r.date) ?? new Decimal(0)).plus(dec(measure === 'cost' ? r.sums.totalCost.amount : r.sums.tokens.totalTokens)));
    groups.set(g, perDay);
  }
  const names = [...groups.keys()].sort((a, b) => sum([...groups.get(b)!.values()]).comparedTo(sum([...groups.get(a)!.values()])));
  // Stacked: each series is the running total up to it; drawn last-to-first so each shows its own band.
  const stacks: number[][] = [];
  const running = days.map(() => new Decimal(0));
  for (const name of names) {
    const perDay = groups.get(name)!;
    days.forEach((d, i) => (running[i] = running[i].plus(perDay.get(d) ?? 0)));
    stacks.push(running.map((v) => v.toNumber()));
  }
  const exact = (seriesIdx: number, dayIdx: number) => {
    const perDay = groups.get(names[seriesIdx - 1]);
    const v = perDay?.get(days[dayIdx]) ?? new Decimal(0);
    return measure === 'cost' ? formatUsd(v) : formatDecimal(v);
  };
  const xs = days.map((d) => Date.parse(`${d}T00:00:00Z`) / 1000);
  const bars = uPlot.paths.bars?.({ size: [0.7, 60] });
  const opts: uPlot.Options = {
    width: Math.max(320, el.clientWidth || 900),
    height: 300,
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), 'UTC'),
    scales: { x: { time: true, range: (_u, min, max) => [min - 43_200, max + 43_200] }, y: { range: (_u, _min, max) => [0, max > 0 ? max * 1.1 : 1] } },
    axes: [{ values: (_u, ticks) => ticks.map((t) => new Date(t * 1000).toISOString().slice(5, 10)), incrs: [86_400, 7 * 86_400, 30 * 86_400] }, { values: (_u, ticks) => ticks.map((t) => (measure === 'cost' ? `$${t}` : String(t))), size: 70 }],
    series: [
      { label: 'day', value: (_u, ts) => (ts == null ? '' : new Date(ts * 1000).toISOString().slice(0, 10)) },
      ...names.map((name, i) => ({ label: name, fill: PALETTE[i % PALETTE.length], stroke: PALETTE[i % PALETTE.length], paths: bars, points: { show: false }, value: (_u: uPlot, _v: number | null, s: number, idx: number | null) => (idx == null ? '' : exact(s, idx)) })),
    ],
    legend: { live: true },
  };
  // uPlot draws series in order: put the tallest stack (the last) first so the lower bands paint over it.
  const order = names.map((_, i) => names.length - 1 - i);
  const data: uPlot.AlignedData = [xs, ...order.map((i) => stacks[i])];
  const ordered = { ...opts, series: [opts.series[0], ...order.map((i) => opts.series[i + 1])] };
  ordered.series.forEach((s, idx) => {
    if (idx > 0) s.value = (_u: uPlot, _v: number | null, _s: number, dayIdx: number | null) => (dayIdx == null ? '' : exact(order[idx - 1] + 1, dayIdx));
  });
  el.innerHTML = names.length ? '' : '<p class="muted">No usage in this range.</p>';
  return new uPlot(ordered, data, el);
}

const savedKey = sessionStorage.getItem(KEY);
if (savedKey !== null) void start(savedKey, sessionStorage.getItem(ACCOUNT) ?? accountOfKey(savedKey));
else signIn();
