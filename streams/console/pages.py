"""The console's pages: server-rendered HTML (Jinja2, autoescaped), no JavaScript at all.

Every page is a template of :data:`TEMPLATES` rendered by :func:`render`. The content security
policy of :mod:`streams.console.app` allows no script, so the queue refreshes itself with a
``<meta http-equiv="refresh">`` and the shadow chart is inline SVG drawn here.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone

from jinja2 import DictLoader, Environment, select_autoescape
from markupsafe import Markup

from detectors.reasons import phrase

__all__ = ["CSS", "TEMPLATES", "reason_text", "render", "svg_chart", "utc", "wall"]


def utc(ms) -> str:
    if not ms:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def wall(seconds) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(seconds)) if seconds else "-"


def reason_text(code: str) -> str:
    try:
        return phrase(code)
    except Exception:
        return code


def svg_chart(hourly: list[tuple[int, list[int]]], width: int = 720, height: int = 180) -> Markup:
    """Stacked bars per hour of stream time: decisions on which the shadow agrees (grey) and
    differs (orange) from the real worker."""
    if not hourly:
        return Markup('<svg class="chart" width="720" height="40" role="img" aria-label="no data">'
                      '<text x="8" y="24">no decisions in this window</text></svg>')
    top = max(a + d for _, (a, d) in hourly) or 1
    n = len(hourly)
    bar = max(2.0, (width - 60) / n)
    parts = [f'<svg class="chart" width="{width}" height="{height + 40}" role="img" '
             f'aria-label="agreeing and differing decisions per hour">',
             f'<line x1="50" y1="{height}" x2="{width}" y2="{height}" stroke="#888"/>',
             f'<text x="4" y="14" font-size="11">{top}</text><text x="4" y="{height}" font-size="11">0</text>']
    for i, (hour, (agree, differ)) in enumerate(hourly):
        x = 50 + i * bar
        ha = (agree / top) * (height - 10)
        hd = (differ / top) * (height - 10)
        parts.append(f'<rect x="{x:.1f}" y="{height - ha:.1f}" width="{bar * 0.8:.1f}" height="{ha:.1f}" '
                     f'fill="#9aa5b1"><title>{utc(hour * 3_600_000)}: {agree} agree</title></rect>')
        parts.append(f'<rect x="{x:.1f}" y="{height - ha - hd:.1f}" width="{bar * 0.8:.1f}" height="{hd:.1f}" '
                     f'fill="#e8590c"><title>{utc(hour * 3_600_000)}: {differ} differ</title></rect>')
    first, last = hourly[0][0], hourly[-1][0]
    parts.append(f'<text x="50" y="{height + 16}" font-size="11">{utc(first * 3_600_000)[:13]}h</text>')
    parts.append(f'<text x="{width - 130}" y="{height + 16}" font-size="11">{utc(last * 3_600_000)[:13]}h</text>')
    parts.append(f'<rect x="50" y="{height + 24}" width="10" height="10" fill="#9aa5b1"/>'
                 f'<text x="64" y="{height + 33}" font-size="11">agree</text>'
                 f'<rect x="120" y="{height + 24}" width="10" height="10" fill="#e8590c"/>'
                 f'<text x="134" y="{height + 33}" font-size="11">differ</text></svg>')
    return Markup("".join(parts))


CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#1f2933;background:#f5f7fa}
header{background:#243b53;color:#fff;padding:8px 16px;display:flex;gap:16px;align-items:center}
header a{color:#d9e2ec;text-decoration:none}header a.on{color:#fff;font-weight:600}
header .who{margin-left:auto;font-size:13px}header form{display:inline}
main{padding:16px;max-width:1200px}
table{border-collapse:collapse;width:100%;background:#fff;margin:8px 0 16px}
th,td{border-bottom:1px solid #d9e2ec;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#e4e7eb;font-weight:600}
.tag{display:inline-block;padding:0 6px;border-radius:3px;font-size:12px;background:#e4e7eb}
.freeze,.close,.deny{background:#ffe3e3;color:#a61b1b}.step_up,.hold{background:#fff3bf;color:#7c5e10}
.unfreeze,.allow,.challenge_passed,.legit{background:#d3f9d8;color:#1b6e20}.challenge_failed,.ato{background:#ffe3e3}
.box{background:#fff;border:1px solid #d9e2ec;padding:8px 12px;margin:8px 0}
.msg{font-style:italic;background:#f0f4f8;padding:6px 10px;border-left:3px solid #486581}
.flash{background:#d3f9d8;border:1px solid #51cf66;padding:6px 10px}
.error{background:#ffe3e3;border:1px solid #fa5252;padding:6px 10px}
form.filters label{margin-right:10px}
.muted{color:#7b8794;font-size:12px}code{font-size:12px}
button{padding:4px 12px}textarea{width:100%}
"""

LAYOUT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }} - atoguard console</title>
{% if refresh %}<meta http-equiv="refresh" content="{{ refresh }}">{% endif %}
<link rel="stylesheet" href="/static/console.css"></head>
<body><header><strong>atoguard</strong>
{% if session and session.user %}
<a href="/" class="{{ 'on' if page=='queue' }}">Queue</a>
<a href="/shadow" class="{{ 'on' if page=='shadow' }}">Policy in shadow</a>
<a href="/health" class="{{ 'on' if page=='health' }}">Health</a>
{% if session.role == 'admin' %}<a href="/audit" class="{{ 'on' if page=='audit' }}">Audit</a>{% endif %}
<span class="who">{{ session.user }} ({{ session.role }})
<form method="post" action="/logout"><input type="hidden" name="csrf" value="{{ session.csrf }}">
<button>Sign out</button></form></span>
{% endif %}</header>
<main>{% if flash %}<p class="flash">{{ flash }}</p>{% endif %}
{% if error %}<p class="error">{{ error }}</p>{% endif %}
{% block body %}{% endblock %}</main></body></html>
"""

LOGIN = """{% extends "layout" %}{% block body %}
<h1>Sign in</h1>
<form method="post" action="/login" class="box">
<input type="hidden" name="csrf" value="{{ session.csrf }}">
<p><label>User <input name="user" autocomplete="username" required></label></p>
<p><label>Password <input name="password" type="password" autocomplete="current-password" required></label></p>
<p><button>Sign in</button></p></form>
{% if oidc %}<p class="box"><a href="/auth/oidc">Sign in with your organisation ({{ oidc }})</a></p>{% endif %}
{% endblock %}"""

QUEUE = """{% extends "layout" %}{% block body %}
<h1>Queue</h1>
<p class="muted">Open freezes and closes first, then step-ups the holder has not passed. Ages are in
stream time (the newest event seen: {{ now|utc }} UTC). This page refreshes every {{ refresh }} s.</p>
<form class="filters" method="get" action="/">
<label>reason <select name="reason"><option value="">any</option>
{% for r in reasons %}<option value="{{ r }}" {{ 'selected' if r == f.reason }}>{{ r }}</option>{% endfor %}</select></label>
<label>severity <select name="severity"><option value="">any</option>
{% for s in severities %}<option {{ 'selected' if s == f.severity }}>{{ s }}</option>{% endfor %}</select></label>
<label>younger than <input name="age" size="4" value="{{ f.age or '' }}"> h</label>
<label>answered <select name="answered"><option value="">either</option>
<option value="yes" {{ 'selected' if f.answered=='yes' }}>yes</option>
<option value="no" {{ 'selected' if f.answered=='no' }}>no</option></select></label>
<button>Filter</button></form>
<table id="queue"><tr><th>account</th><th>action</th><th>since</th><th>age</th><th>severity</th><th>risk</th>
<th>why</th><th>holder answered</th></tr>
{% for r in rows %}<tr class="case">
<td><a href="/account/{{ r.ref }}">{{ r.account }}</a></td>
<td><span class="tag {{ r.action }}">{{ r.action }}</span></td><td>{{ r.ts|utc }}</td>
<td>{{ '%.1f h'|format(r.age_h) if r.age_h is not none else '-' }}</td><td>{{ r.severity or '-' }}</td>
<td>{{ '%.2f'|format(r.risk) if r.risk is not none else '-' }}</td>
<td>{% for code in r.reasons[:3] %}<span title="{{ code|reason }}">{{ code }}</span>{{ ', ' if not loop.last }}{% endfor %}</td>
<td>{% if r.answered %}<span class="tag {{ r.answered }}">{{ r.answered }}</span>{% else %}not yet{% endif %}</td></tr>
{% else %}<tr><td colspan="8">Nothing open{{ ' with these filters' if filtered }}.</td></tr>{% endfor %}
</table>{% endblock %}"""

ACCOUNT = """{% extends "layout" %}{% block body %}
<h1>Account {{ a.account }} <span class="tag {{ state }}">{{ state_words }}</span></h1>
<p class="muted">reference {{ a.ref }}; device ids and addresses are shown as keyed pseudonyms.</p>
{% if why %}<div class="box" id="why"><h2>Why atoguard acted</h2>
<p><span class="tag {{ why.action }}">{{ why.action }}</span> at {{ why.ts|utc }} UTC, risk {{ '%.2f'|format(why.risk or 0) }}
{% if why.expires_at %}, until {{ why.expires_at|utc }} UTC{% endif %}</p>
<ul>{% for code in why.reasons %}<li><code>{{ code }}</code>: {{ code|reason }}</li>{% endfor %}</ul>
{% if why.message %}<p>What the holder saw:</p><p class="msg">{{ why.message }}</p>{% endif %}
{% if why.methods is not none %}<p>Way back: {{ why.methods|join(', ') if why.methods else 'none (only an analyst can lift it)' }}</p>{% endif %}
</div>{% endif %}
{% if p %}<div class="box"><h2>What the worker holds</h2>
<p>{{ p.n_events }} events from {{ p.first_ts|utc }} to {{ p.last_ts|utc }} UTC; restriction {{ p.restriction.state }}.
Devices: {% for d in p.devices %}<code>{{ d.id }}</code>{{ ' (trusted)' if d.trust > 0 }}{{ ', ' if not loop.last }}{% endfor %};
{{ p.ips }} address(es); countries {{ p.countries|join(', ') or '-' }}.</p>
{% if p.challenge %}<p>Open challenge: {{ p.challenge.action }} issued {{ p.challenge.issued_at|utc }}, methods
{{ p.challenge.methods|join(', ') }}, put to device <code>{{ p.challenge.device or '-' }}</code>, address <code>{{ p.challenge.ip or '-' }}</code>.</p>{% endif %}
{% for f in p.failures %}<p>Failed challenge {{ f.ts|utc }}: {{ f.method or '-' }}, {{ f.reason }}, device <code>{{ f.device or '-' }}</code>, address <code>{{ f.ip or '-' }}</code></p>{% endfor %}
{% for x in p.passes %}<p>Passed {{ x.ts|utc }}: {{ x.method }} ({{ 'strong' if x.strong else 'weak' }}) on {{ x.on }} <code>{{ x.id }}</code></p>{% endfor %}
</div>{% endif %}
{% if can_judge %}<div class="box" id="verdict"><h2>Verdict</h2>
<form method="post" action="/account/{{ a.ref }}/verdict">
<input type="hidden" name="csrf" value="{{ session.csrf }}">
<p><label><input type="radio" name="label" value="legit" required> legit</label>: {{ change.legit }}</p>
<p><label><input type="radio" name="label" value="ato"> ato</label>: {{ change.ato }}</p>
<p><label>Note <textarea name="note" rows="2" maxlength="1000"></textarea></label></p>
<p><button>Publish verdict</button> <span class="muted">as {{ session.user }}, to the verdicts topic, event time {{ verdict_ts|utc }} UTC</span></p>
</form></div>{% else %}<p class="muted">Your role ({{ session.role }}) may read but not give verdicts.</p>{% endif %}
<h2>Timeline</h2>
<table id="timeline"><tr><th>time (UTC)</th><th>what</th><th>detail</th></tr>
{% for e in timeline %}<tr class="{{ e.what }}"><td>{{ e.ts|utc }}</td>
{% if e.what == 'command' %}<td>command <span class="tag {{ e.action }}">{{ e.action }}</span>{{ ' (shadow)' if e.dry_run }}</td>
<td>risk {{ '%.2f'|format(e.risk or 0) }}; {{ e.reasons|join(', ') }}{% if e.message %}<div class="msg">{{ e.message }}</div>{% endif %}
{% if e.methods %}<div class="muted">methods {{ e.methods|join(', ') }}</div>{% endif %}</td>
{% elif e.what == 'alert' %}<td>alert ({{ e.severity }})</td><td>{{ e.title }}; risk {{ e.risk_score }}/100; {{ e.reasons|join(', ') }}</td>
{% elif e.what == 'decision' %}<td>decision <span class="tag {{ e.decision }}">{{ e.decision }}</span>{{ ' (resolution)' if e.resolves }}{{ ' (shadow)' if e.dry_run }}</td>
<td>on {{ e.event_id }}{% if e.reasons %}; {{ e.reasons|join(', ') }}{% endif %}</td>
{% elif e.what == 'answer' %}<td>challenge <span class="tag {{ e.kind }}">{{ e.kind|replace('challenge_', '') }}</span></td>
<td>{{ e.method }}{{ ', ' ~ e.reason if e.reason }}; device <code>{{ e.device or '-' }}</code>, address <code>{{ e.ip or '-' }}</code></td>
{% elif e.what == 'signal' %}<td>partner signal ({{ 'received' if e.direction == 'in' else 'shared' }})</td>
<td>{{ e.kind }}{{ ', ' ~ e.reason if e.reason }}{% if e.partner_role %}; from a {{ e.partner_role }}{% endif %}</td>
{% elif e.what == 'verdict' %}<td>verdict <span class="tag {{ e.label }}">{{ e.label }}</span></td>
<td>{{ e.source }}{{ ' ' ~ e.actor if e.actor }}{% if e.note %}: {{ e.note }}{% endif %}</td>{% endif %}</tr>
{% else %}<tr><td colspan="3">nothing yet</td></tr>{% endfor %}</table>
<h2>Verdicts given here</h2>
<table id="audit"><tr><th>when</th><th>who</th><th>what</th></tr>
{% for r in audit %}<tr><td>{{ r.at|wall }}</td><td>{{ r.actor }} ({{ r.role }})</td><td>{{ r.detail.label }}: {{ r.detail.change }}{% if r.detail.note %}; note: {{ r.detail.note }}{% endif %}</td></tr>
{% else %}<tr><td colspan="3">none</td></tr>{% endfor %}</table>
{% endblock %}"""

SHADOW = """{% extends "layout" %}{% block body %}
<h1>The policy in shadow</h1>
<p class="muted">A candidate policy runs as a second worker with <code>ATOGUARD_POLICY__DRY_RUN=true</code> and its own
<code>--app-id</code> on the same topics: its commands and decisions carry <code>dry_run: true</code>. Here they are
set against the real worker's, per decided event and per triggering event, over the last {{ hours }} h of stream time
(since {{ d.since|utc }} UTC). {{ d.shadow_seen }} shadow outputs in the index.</p>
<form method="get" action="/shadow"><label>last <input name="hours" size="4" value="{{ hours }}"> hours</label> <button>Show</button></form>
{{ chart }}
<table id="pairs"><tr><th>real</th><th>shadow</th><th>count</th></tr>
{% for (real, shadow), n in d.pairs %}<tr><td>{{ real }}</td><td>{{ shadow }}</td><td>{{ n }}</td></tr>
{% else %}<tr><td colspan="3">no decisions in this window</td></tr>{% endfor %}</table>
<h2>Where they differ</h2>
<table id="differ"><tr><th>time</th><th>account</th><th>on</th><th>real</th><th>shadow</th><th>reasons</th></tr>
{% for r in d.rows %}<tr><td>{{ r.ts|utc }}</td><td><a href="/account/{{ r.ref }}">{{ r.account }}</a></td><td>{{ r.source }}</td>
<td>{{ r.real }}</td><td>{{ r.shadow }}</td><td>{{ r.reasons|join(', ') }}</td></tr>
{% else %}<tr><td colspan="6">none</td></tr>{% endfor %}</table>{% endblock %}"""

HEALTH = """{% extends "layout" %}{% block body %}
<h1>Health</h1>
{% for w in workers %}<div class="box"><h2>Worker {{ w.url }}</h2>
{% if w.error %}<p class="error">{{ w.error }}</p>{% else %}
<p>consumer lag <strong>{{ w.lag|int }}</strong> messages; {{ w.events|int }} events accepted;
throughput {{ '%.0f'|format(w.rate) if w.rate is not none else '(measured at the next visit)' }} events/s;
commands {{ w.commands|int }}; dead letters {{ w.dead|int }}.</p>
<table><tr><th>topic</th><th>partition</th><th>lag</th></tr>{% for (t, p, v) in w.lag_rows %}<tr><td>{{ t }}</td><td>{{ p }}</td><td>{{ v|int }}</td></tr>{% endfor %}</table>
<table><tr><th>dead letters (worker): topic</th><th>reason</th><th>count</th></tr>{% for (t, r, v) in w.dead_rows %}<tr><td>{{ t }}</td><td>{{ r }}</td><td>{{ v|int }}</td></tr>{% else %}<tr><td colspan="3">none</td></tr>{% endfor %}</table>
{% endif %}</div>{% else %}<p class="muted">No worker metrics address configured (--worker-metrics).</p>{% endfor %}
<div class="box"><h2>Dead letters by reason (dead-letter topic)</h2>
<table id="dead"><tr><th>source topic</th><th>reason</th><th>count</th></tr>
{% for (t, r, n) in dead %}<tr><td>{{ t }}</td><td>{{ r }}</td><td>{{ n }}</td></tr>{% else %}<tr><td colspan="3">none</td></tr>{% endfor %}</table></div>
<div class="box"><h2>The console's index</h2>
<p>Reading {{ feed.topics|join(', ') or 'no topic yet' }}; {{ feed.records }} records indexed{{ ', caught up' if feed.caught_up }}.
{% if feed.last_error %}<span class="error">{{ feed.last_error }}</span>{% endif %}</p>
<table>{% for k, v in counts.items() %}<tr><td>{{ k }}</td><td>{{ v }}</td></tr>{% endfor %}</table></div>
{% endblock %}"""

AUDIT = """{% extends "layout" %}{% block body %}
<h1>Audit log</h1>
<table id="audit"><tr><th>when</th><th>who</th><th>role</th><th>what</th><th>account</th><th>detail</th></tr>
{% for r in rows %}<tr><td>{{ r.at|wall }}</td><td>{{ r.actor or '-' }}</td><td>{{ r.role or '-' }}</td><td>{{ r.action }}</td>
<td>{{ r.subject or '-' }}</td><td>{{ r.detail|tojson }}</td></tr>{% endfor %}</table>{% endblock %}"""

ERROR = """{% extends "layout" %}{% block body %}<h1>{{ title }}</h1><p>{{ text }}</p>{% endblock %}"""

TEMPLATES = {"layout": LAYOUT, "login": LOGIN, "queue": QUEUE, "account": ACCOUNT, "shadow": SHADOW,
             "health": HEALTH, "audit": AUDIT, "error": ERROR}

_env = Environment(loader=DictLoader(TEMPLATES), autoescape=select_autoescape(default=True, default_for_string=True))
_env.filters.update(utc=utc, wall=wall, reason=reason_text)


def render(name: str, **context) -> str:
    context.setdefault("refresh", None)
    context.setdefault("flash", None)
    context.setdefault("error", None)
    return _env.get_template(name).render(**context)
