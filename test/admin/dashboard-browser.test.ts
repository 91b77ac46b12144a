/**
 * The dashboard in a real browser: headless Chromium (the Debian package) driven by
 * puppeteer-core. Skipped, with a message saying what to install, where no Chromium exists.
 */
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';
import { QueryTypes } from 'sequelize';
import { createAdminRouter } from '../../src';
import { ADMIN_TOKEN, createAdminApp, seed, type AdminFixture } from '../support/admin';
import { requireChromium } from '../support/chromium';
import { createTestDb, testDialects, type TestDb } from '../support/db';

// The callbacks given to waitForFunction and $eval run in the page, where these are the browser's.
declare const document: any;
type HTMLElement = { hidden: boolean; dataset: Record<string, string> };

const OUTPUT = join(__dirname, '..', '..', 'test-output');

describe('dashboard in headless Chromium', function () {
  this.timeout(120_000);
  let browser: Browser;

  before(async function () {
    const executablePath = requireChromium(this);
    browser = await puppeteer.launch({ executablePath, headless: true, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
    mkdirSync(OUTPUT, { recursive: true });
  });
  after(async () => {
    await browser?.close();
  });

  for (const kind of testDialects()) {
    describe(kind, () => {
      let db: TestDb;
      let fx: AdminFixture;
      let server: Server;
      let base: string;
      let page: Page;
      const problems: string[] = [];

      beforeEach(async () => {
        db = await createTestDb(kind);
        fx = await createAdminApp(db.sequelize);
        fx.app.use('/admin-ro', createAdminRouter({ outbox: fx.outbox, authorize: (req) => req.headers.authorization === `Bearer ${ADMIN_TOKEN}`, readOnly: true }));
        server = fx.app.listen(0, '127.0.0.1');
        await new Promise((r) => server.once('listening', r));
        base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
        page = await browser.newPage();
        page.setDefaultTimeout(30_000);
        await page.setViewport({ width: 1400, height: 900 });
        problems.length = 0;
        // A script or style the CSP blocked, or a script error, shows up here.
        page.on('console', (m) => {
          // The 401 of the unauthorized load, and the favicon asked for on that error page, are expected.
          const url = m.location().url ?? '';
          if (m.type() === 'error' && !/401/.test(m.text()) && !url.endsWith('/favicon.ico')) problems.push(`${m.text()} ${url}`);
        });
        page.on('pageerror', (e) => problems.push(String(e)));
      });
      afterEach(async () => {
        await page?.close();
        server.closeAllConnections();
        await new Promise((r) => server.close(r));
        await fx.outbox.close();
        await db.close();
      });

      /** The counts per state straight from the table. */
      async function tableCounts(): Promise<Record<string, number>> {
        const rows = (await db.sequelize.query(
          `SELECT state, CASE WHEN next_attempt_time IS NULL THEN 1 ELSE 0 END AS terminal, COUNT(*) AS n FROM integration_event_log GROUP BY state, CASE WHEN next_attempt_time IS NULL THEN 1 ELSE 0 END`,
          { type: QueryTypes.SELECT },
        )) as Array<{ state: unknown; terminal: unknown; n: unknown }>;
        const c: Record<string, number> = { notPublished: 0, inProgress: 0, published: 0, publishedFailed: 0, terminalFailed: 0 };
        for (const r of rows) {
          const state = Number(r.state);
          const key = state === 3 ? (Number(r.terminal) === 1 ? 'terminalFailed' : 'publishedFailed') : ['notPublished', 'inProgress', 'published'][state]!;
          c[key]! += Number(r.n);
        }
        return c;
      }

      const text = (selector: string) => page.$eval(selector, (e) => (e.textContent ?? '').trim());

      it('loads with auth, shows the counts, filters failed events, republishes one and sees it Published', async () => {
        const ids = await seed(fx.outbox, { published: 6, pending: 2, retrying: 1, terminal: 3 });

        // 1. Closed without auth; loads with it.
        const refused = await page.goto(`${base}/admin/`);
        assert.equal(refused?.status(), 401);
        await page.setExtraHTTPHeaders({ authorization: `Bearer ${ADMIN_TOKEN}` });
        const loaded = await page.goto(`${base}/admin/`, { waitUntil: 'networkidle0' });
        assert.equal(loaded?.status(), 200);

        // 2. The counts match the database.
        await page.waitForFunction(() => document.getElementById('count-published')?.textContent !== '-');
        const counts = await tableCounts();
        for (const [key, n] of Object.entries(counts)) assert.equal(await text(`#count-${key}`), String(n), key);
        assert.equal(await text('#count-backlog'), String(counts.notPublished! + counts.inProgress! + counts.publishedFailed!));
        assert.notEqual(await page.$eval('#spark-line', (e) => e.getAttribute('points')), '', 'the sparkline has its first sample');
        assert.equal(await page.$eval('#republish-all', (e) => (e as unknown as HTMLElement).hidden), false, 'mutations are shown when not read-only');

        // 3. Filter to failed events.
        await page.select('#filter-state', '3');
        await page.waitForFunction((n) => document.querySelectorAll('#events-body tr').length === n && [...document.querySelectorAll('#events-body td.state')].every((td: HTMLElement & { textContent: string | null }) => /^Failed/.test(td.textContent ?? '')), {}, ids.retrying.length + ids.terminal.length);

        // 4. Republish one terminal failure from its detail pane.
        const target = ids.terminal[1]!;
        await page.click(`#events-body tr[data-id="${target}"]`);
        await page.waitForSelector('#detail-republish:not([hidden])');
        assert.equal(await text('#detail-title'), target);
        assert.equal(await text('#detail-error'), `broker refused ${target}`);
        const answered = page.waitForResponse((r) => r.url().endsWith('/admin/events/republish') && r.request().method() === 'POST');
        await page.click('#detail-republish');
        assert.equal((await answered).status(), 200);
        const [republished] = await fx.outbox.store.find([target]);
        assert.equal(republished?.state, 0, 'the row is due again');

        // 5. The relay runs; the page shows the event Published.
        assert.equal(await fx.outbox.runPass('retry-by-database'), 1);
        assert.ok(fx.publisher.ids().includes(target));
        await page.click('#refresh');
        await page.waitForFunction(() => document.querySelector('#detail-fields dd.state')?.textContent === 'Published');
        await page.waitForFunction((n) => document.getElementById('count-published')?.textContent === String(n), {}, counts.published! + 1);
        await page.select('#filter-state', '');
        await page.waitForFunction((id) => document.querySelector(`#events-body tr[data-id="${id}"] td.state`)?.textContent === 'Published', {}, target);

        // 6. A screenshot under test output.
        await page.screenshot({ path: join(OUTPUT, `dashboard-${kind}.png`), fullPage: true });
        assert.deepEqual(problems, [], 'no script error and nothing blocked by the CSP');
      });

      it('searches by content, shows subscriptions, and hides every mutation when read-only', async () => {
        const ids = await seed(fx.outbox, { published: 3, terminal: 2 });
        await page.setExtraHTTPHeaders({ authorization: `Bearer ${ADMIN_TOKEN}` });
        await page.goto(`${base}/admin/`, { waitUntil: 'networkidle0' });
        await page.type('#filter-q', 'order 2 of');
        await page.click('#filters button[type="submit"]');
        await page.waitForFunction(() => document.querySelectorAll('#events-body tr').length === 1);
        assert.equal(await page.$eval('#events-body tr', (e) => (e as unknown as HTMLElement).dataset.id), ids.published[1]);
        await page.click('#tab-subscriptions');
        await page.waitForFunction(() => document.querySelectorAll('#subscriptions-body tr').length === 1);
        assert.match(await text('#subscriptions-body tr'), /OrderPlaced/);

        await page.goto(`${base}/admin-ro/`, { waitUntil: 'networkidle0' });
        await page.waitForSelector('#read-only:not([hidden])');
        await page.click(`#events-body tr[data-id="${ids.terminal[0]}"]`);
        await page.waitForFunction(() => document.getElementById('detail-title')?.textContent !== 'Event');
        const visible = await page.$$eval('.mutation', (all) => all.filter((b) => !(b as unknown as HTMLElement).hidden).map((b) => b.id));
        assert.deepEqual(visible, []);
        assert.deepEqual(problems, []);
      });
    });
  }
});
