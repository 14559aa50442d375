/** The page frame: head, navigation, notices, and the stylesheet (inline: no assets to serve). */
import { type Html, html, raw } from './html.ts';

const CSS = raw(`
*{box-sizing:border-box}body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1d2330;background:#f6f7f9}
header{display:flex;gap:18px;align-items:center;padding:10px 20px;background:#1d2330;color:#fff}
header a{color:#cfd6e4;text-decoration:none}header a:hover,header a.on{color:#fff}header .brand{font-weight:700;color:#fff;margin-right:8px}
header .right{margin-left:auto;display:flex;gap:12px;align-items:center}header form{margin:0}
main{padding:16px 20px;max-width:1200px}h1{font-size:20px;margin:4px 0 14px}h2{font-size:16px;margin:22px 0 8px}
a{color:#2557c7}table{border-collapse:collapse;width:100%;background:#fff;border:1px solid #dde1e8}
th,td{padding:5px 8px;border-bottom:1px solid #eceef2;text-align:left;vertical-align:top}td{overflow-wrap:anywhere}th{background:#f0f2f5;font-weight:600;font-size:13px}
td.num,th.num{text-align:right;white-space:nowrap}td.nowrap{white-space:nowrap}.err{color:#a12622}code,pre,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12px}
pre.json{background:#fff;border:1px solid #dde1e8;padding:8px;max-height:320px;overflow:auto;margin:4px 0;white-space:pre-wrap;word-break:break-word}
.badge{display:inline-block;padding:1px 7px;border-radius:9px;font-size:12px;background:#e4e7ec}
.s-completed{background:#d5f2dc;color:#17602b}.s-failed{background:#fbd9d7;color:#8f1d16}.s-cancelled{background:#ece3f7;color:#5a2d91}
.s-running{background:#d9e8fd;color:#1a4d9c}.s-waiting{background:#fff1c7;color:#7a5a00}.s-paused{background:#ffe2c4;color:#8a4300}.s-retrying{background:#ffe2c4;color:#8a4300}
.cards{display:flex;gap:10px;flex-wrap:wrap}.card{background:#fff;border:1px solid #dde1e8;padding:8px 14px;min-width:110px}
.card b{display:block;font-size:20px}.card a{text-decoration:none;color:inherit}
.muted{color:#6b7280}.notice{padding:8px 12px;margin:0 0 12px;background:#e3f4e7;border:1px solid #b6e0c0}
.error{padding:8px 12px;margin:0 0 12px;background:#fdeceb;border:1px solid #f3bdb9}
form.filters{display:flex;gap:8px;flex-wrap:wrap;align-items:end;margin-bottom:12px}form.filters label{display:flex;flex-direction:column;font-size:12px;color:#4b5563}
input,select,textarea,button{font:inherit;padding:4px 6px}button{cursor:pointer;border:1px solid #b9c0cc;background:#fff;border-radius:3px}
button.danger{border-color:#d9534f;color:#a12622}.actions{display:flex;gap:10px;flex-wrap:wrap;align-items:flex-start}
.actions form{background:#fff;border:1px solid #dde1e8;padding:8px;display:flex;gap:6px;align-items:center}
dl.facts{display:grid;grid-template-columns:max-content 1fr max-content 1fr;gap:3px 14px;background:#fff;border:1px solid #dde1e8;padding:10px;margin:0}
dl.facts dt{color:#6b7280}dl.facts dd{margin:0}
.chart{background:#fff;border:1px solid #dde1e8;max-width:100%;height:auto}.chart text{font-size:10px;fill:#6b7280}
.chart .axis{stroke:#9aa3b2}.chart .grid{stroke:#eceef2}.bar-completed{fill:#3aa65a}.bar-failed{fill:#d9534f}.bar-cancelled{fill:#8e6cc0}
path.p50{stroke:#2557c7;stroke-width:2}path.p95{stroke:#e08a1e;stroke-width:2}circle.p50{fill:#2557c7}circle.p95{fill:#e08a1e}
.charts figure{margin:0}.charts figcaption{margin:0 0 4px}.legend span{display:inline-block;width:10px;height:10px;margin:0 4px 0 12px}.charts{display:flex;gap:16px;flex-wrap:wrap}
.bar{position:relative;height:10px;background:#f0f2f5;min-width:160px}.bar i{position:absolute;top:0;height:10px;background:#5b8def;min-width:2px}
.bar i.failed,.bar i.retrying{background:#d9534f}.bar i.waiting{background:#e9c46a}.pager{margin-top:10px;display:flex;gap:14px}
details summary{cursor:pointer;color:#2557c7}
`);

/** What the frame around a page shows. */
export interface LayoutOptions {
  title: string;
  body: Html;
  nav: { label: string; href: string; active: boolean }[];
  readOnly: boolean;
  /** A logout form, when the dashboard has a token. */
  logout?: Html | undefined;
  notice?: string | undefined;
}

/** The whole HTML document of a page. */
export function layout(o: LayoutOptions): string {
  return html`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>${o.title} · Trellis</title><style>${CSS}</style></head>
<body><header><span class="brand">Trellis</span>
${o.nav.map((n) => html`<a href="${n.href}"${n.active ? raw(' class="on"') : ''}>${n.label}</a>`)}
<span class="right">${o.readOnly ? html`<span class="badge">read-only</span>` : ''}${o.logout ?? ''}</span></header>
<main>${o.notice ? html`<p class="notice" role="status">${o.notice}</p>` : ''}${o.body}</main></body></html>`.text;
}
