/** The dashboard's escaping template, its stateless sessions and its Origin check. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { bearer, sameOrigin, SESSION_MS, Sessions } from '../../src/dashboard/auth.ts';
import { latencyChart, throughputChart } from '../../src/dashboard/charts.ts';
import { duration, html, raw } from '../../src/dashboard/html.ts';

const headers = (h: Record<string, string>) => new Headers(h);

describe('dashboard html', () => {
  it('escapes every interpolated value, in text and in attributes, but not nested html', () => {
    const evil = `<script>alert("x")</script>' onmouseover='y`;
    const out = html`<p title="${evil}">${evil}${[evil, html`<b>${evil}</b>`]}${raw('<i>ok</i>')}${null}${undefined}${false}${0}</p>`.text;
    assert.ok(!out.includes('<script>'));
    assert.ok(!out.includes(`' onmouseover`));
    assert.equal(out.split('&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&#39; onmouseover=&#39;y').length - 1, 4);
    assert.ok(out.includes('<b>&lt;script'));
    assert.ok(out.includes('<i>ok</i>'));
    assert.ok(out.endsWith('0</p>'));
  });

  it('formats durations', () => {
    assert.deepEqual([0, 850, 4200, 200_000, 7_500_000, 2 * 86_400_000 + 3_600_000].map(duration), ['0 ms', '850 ms', '4.2 s', '3 m 20 s', '2 h 5 m', '2 d 1 h']);
    assert.equal(duration(null), '—');
  });

  it('draws one bar per non-empty series of a bucket and one point per bucket with latencies', () => {
    const end = new Date('2026-12-04T20:00:00Z');
    const buckets = [
      { end, completed: 3, failed: 1, cancelled: 0, p50: 100, p95: 900 },
      { end, completed: 0, failed: 0, cancelled: 0, p50: null, p95: null },
      { end, completed: 1, failed: 0, cancelled: 2, p50: 50, p95: 60 },
    ];
    const bars = throughputChart(buckets).text;
    assert.equal(bars.match(/<rect /g)?.length, 4);
    assert.match(bars, /<title>20:00: 3 completed<\/title>/);
    const lines = latencyChart(buckets).text;
    assert.equal(lines.match(/<circle /g)?.length, 4);
    assert.match(lines, /class="p95" d="M[\d.]+,[\d.]+M[\d.]+,[\d.]+"/, 'the empty bucket breaks the line');
  });
});

describe('dashboard sessions', () => {
  it('verifies its own cookies and refuses tampered, foreign and expired ones', () => {
    let now = 1_000_000;
    const sessions = new Sessions('a-long-enough-token', () => now);
    const cookie = sessions.issue();
    const id = sessions.verify(cookie);
    assert.ok(id);
    assert.equal(sessions.verify(`${cookie.slice(0, -1)}${cookie.endsWith('A') ? 'B' : 'A'}`), undefined);
    assert.equal(new Sessions('another-long-token', () => now).verify(cookie), undefined, 'a new token ends old sessions');
    assert.equal(sessions.verify('a.b'), undefined);
    assert.equal(sessions.verify(undefined), undefined);
    now += SESSION_MS + 1;
    assert.equal(sessions.verify(cookie), undefined, 'expired');
  });

  it('gives each session its own CSRF token', () => {
    const sessions = new Sessions(undefined);
    const a = sessions.verify(sessions.issue())!;
    const b = sessions.verify(sessions.issue())!;
    assert.ok(sessions.checkCsrf(a, sessions.csrf(a)));
    assert.ok(!sessions.checkCsrf(a, sessions.csrf(b)));
    assert.ok(!sessions.checkCsrf(a, undefined));
    assert.ok(!sessions.protected);
    assert.ok(!sessions.checkToken(''));
  });

  it('checks the token in constant time and reads bearer headers', () => {
    const sessions = new Sessions('a-long-enough-token');
    assert.ok(sessions.checkToken('a-long-enough-token'));
    assert.ok(!sessions.checkToken('a-long-enough-tokeN'));
    assert.equal(bearer('Bearer  abc '), 'abc');
    assert.equal(bearer('Basic abc'), undefined);
  });

  it('accepts a post whose Origin, else Referer, names the request host', () => {
    const url = 'http://127.0.0.1:4000/runs/x/cancel';
    assert.ok(sameOrigin(headers({ host: '127.0.0.1:4000', origin: 'http://127.0.0.1:4000' }), url));
    assert.ok(!sameOrigin(headers({ host: '127.0.0.1:4000', origin: 'http://127.0.0.1:4001' }), url));
    assert.ok(sameOrigin(headers({ host: '127.0.0.1:4000', referer: 'http://127.0.0.1:4000/runs/x' }), url));
    assert.ok(!sameOrigin(headers({ host: '127.0.0.1:4000', origin: 'null' }), url));
    assert.ok(!sameOrigin(headers({ host: '127.0.0.1:4000' }), url), 'neither header: refused');
  });
});
