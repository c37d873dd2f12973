"""The evaluation report: plain-text tables for the terminal, and a folder with ``report.md``,
``metrics.json`` and PNG plots (matplotlib, Agg backend).

Everything here reads the dictionary made by :func:`evaluation.metrics.evaluate`; nothing is
computed twice.
"""

from __future__ import annotations

import math
import os
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

__all__ = ["CURVE_PLOT", "PLOTS", "TARGETS", "curve_point", "format_ceiling", "misses", "format_curve", "format_headline", "format_tables",
           "friction_curve", "write_report"]

#: File name of the plot written by ``atoguard eval --curve``.
CURVE_PLOT = "stopped_vs_friction.png"

#: File names of the plots written by :func:`write_report`.
PLOTS = {
    "threshold": "detection_vs_false_freeze.png",
    "time_to_freeze": "time_to_freeze.png",
    "stopped": "stopped_before_loss.png",
}


# -- formatting -------------------------------------------------------------------------------

def pct(x: float | None, digits: int = 1) -> str:
    """``0.1234 -> '12.3%'``; None -> ``'-'``."""
    return "-" if x is None else f"{100 * x:.{digits}f}%"


def duration(seconds: float | None) -> str:
    """A readable duration: ``'45 s'``, ``'12.0 min'``, ``'3.2 h'``, ``'1.5 d'``; None -> ``'-'``."""
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def num(x: float | None, digits: int = 1) -> str:
    if x is None:
        return "-"
    if float(x).is_integer():
        return f"{int(x)}"
    return f"{x:.{digits}f}"


def rate(x: float | None) -> str:
    return "-" if x is None else f"{x:.4g}"


def _text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    def line(r: Sequence[str]) -> str:
        return "  ".join(str(v).ljust(w) if i == 0 else str(v).rjust(w)
                         for i, (v, w) in enumerate(zip(r, widths))).rstrip()
    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    out = ["| " + " | ".join(header) + " |",
           "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
    out += ["| " + " | ".join(str(v) for v in r) + " |" for r in rows]
    return "\n".join(out)


# -- the tables (shared by terminal and Markdown) ---------------------------------------------

def _attack_table(m: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    header = ["scenario", "incidents", "detected (flagged)", "with loss", "stopped before loss", "stepped up", "frozen",
              "time to freeze", "events to freeze", "moves before", "amount before"]
    def row(name: str, r: Mapping[str, Any]) -> list[str]:
        return [name, str(r["incidents"]), pct(r["detected_share"]), str(r["with_loss"]),
                pct(r["stopped_before_loss_share"]) + _flag("stopped_before_loss", r["stopped_before_loss_share"], short=True),
                pct(r["stepped_up_before_loss_share"]),
                str(r["frozen"]), duration(r["median_time_to_freeze_s"]),
                num(r["median_events_to_freeze"]),
                pct(r["money_movements_before_freeze_share"]),
                pct(r["money_amount_before_freeze_share"])]
    rows = [row(n, r) for n, r in m["attacks"]["scenarios"].items()]
    rows.append(row("ALL ATTACKS", m["attacks"]["all"]))
    return header, rows


def _legit_table(m: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    r = m["legit_accounts"]
    header = ["legitimate accounts", "accounts", "per 30 days"]
    names = {"frozen": "frozen", "closed": "closed",
             "stepped_up": "challenged at any time (look-alike situations included)"}
    rows = [[names[k], str(r[k]), pct(r[f"{k}_per_30d"], 2)] for k in ("frozen", "closed", "stepped_up")]
    return header, rows


def _benign_table(m: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    header = ["benign situation", "incidents", "frozen", "closed", "stepped up"]
    rows = [[n, str(r["incidents"]), pct(r["frozen_share"]) + _flag("worst_benign_situation_frozen", r["frozen_share"], short=True),
             pct(r["closed_share"]) + _flag("legit_closed_per_30d", r["closed_share"], short=True),
             pct(r["stepped_up_share"])] for n, r in m["benign_situations"].items()]
    return header, rows


def _cohort_table(m: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    r = m["repay_cohort"]
    header = ["legitimate accounts' time", "freezes", "account-days", "freezes per account-day"]
    rows = [["24 h after a loan repayment", str(r["freezes_after_repayment"]),
             num(r["exposure_days_after_repayment"], 2), rate(r["rate_after_repayment"])],
            ["all other observed time", str(r["freezes_otherwise"]),
             num(r["exposure_days_otherwise"], 2), rate(r["rate_otherwise"])]]
    if "challenges_after_repayment" in r:
        header = header + ["challenges", "challenges per account-day"]
        rows[0] += [str(r["challenges_after_repayment"]), rate(r["challenge_rate_after_repayment"])]
        rows[1] += [str(r["challenges_otherwise"]), rate(r["challenge_rate_otherwise"])]
    return header, rows


def _friction_table(m: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    f = m.get("friction")
    if not f:
        return ["friction", "value"], []
    o, lk, fr, cl = f["ordinary_days"], f["lockouts"], f["frozen"], f["closes"]
    header = ["friction", "value"]
    rows = [
        ["legitimate accounts challenged on ordinary days, per 30 days",
         f"{pct(o['per_30d'], 2)} ({o['accounts']} accounts){_flag('challenged_on_ordinary_days_per_30d', o['per_30d'])}"],
        ["  challenges per legitimate account per 30 days", rate(o["challenges_per_account_per_30d"])],
        ["challenges per look-alike situation", rate(f["situations"]["challenges_per_situation"])],
        ["lock-outs: holders challenged with a method they cannot pass",
         f"{lk['challenges']} challenges, {lk['accounts']} accounts ({pct(lk['share'], 2)} of all)"],
        ["freezes of a holder (any account, attacked ones included) with no way back they pass",
         f"{lk['freezes_without_way_back']} freezes on {lk['freezes_without_way_back_accounts']} accounts"],
        ["hours frozen, legitimate accounts",
         f"{num(fr['hours'], 1)} h over {fr['accounts']} frozen legitimate accounts ({fr['freezes']} freezes, "
         f"{fr['lifted_by_way_back']} lifted by their way back)"],
        ["  per frozen account", num(fr["hours_per_frozen_account"], 1)],
        ["closes without analyst verdict", f"{cl['without_analyst_verdict']} of {cl['closes']} "
                                           f"({cl['without_analyst_verdict_on_legit_accounts']} on legitimate accounts)"],
    ]
    for name, r in f["situations"]["scenarios"].items():
        rows.append([f"challenges per {name} situation", f"{rate(r['challenges_per_situation'])} "
                                                         f"({r['challenges']} / {r['situations']})"
                     + _flag("challenges_per_lookalike_situation", r["challenges_per_situation"])])
    return header, rows


def _precision_table(m: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    header = ["output", "total", "during an attack", "precision"]
    rows = [[a, str(r["total"]), str(r["during_attack"]), pct(r["precision"])]
            for a, r in m["precision"].items()]
    return header, rows


_ATTACK_LEGEND = ("<<: misses its target; detected: any alert or command on the account during the incident (a warning, "
                  "not a stop); stopped: before the first loss, a command the attacker cannot get "
                  "past (the scoring's rule, see Definitions), as a share of the incidents with a "
                  "loss; stepped up: any step_up before the first loss; time, events to freeze: "
                  "medians over the frozen incidents; moves, amount before: share of the "
                  "attacker's money movements made before the first freeze")

_SECTIONS = (
    ("Attacks (label ato)", _attack_table),
    ("Legitimate accounts", _legit_table),
    ("Benign situations (label legit), window [start, end + 24 h]", _benign_table),
    ("Repayment cohort", _cohort_table),
    ("Friction", _friction_table),
    ("Precision", _precision_table),
)


def format_tables(m: Mapping[str, Any]) -> str:
    """All tables as plain text, for the terminal."""
    ev = m["events"]
    parts = [f"events: {ev['count']} on {ev['accounts']} accounts over {num(ev['observed_days'], 2)} days; "
             f"incidents: {m['labels']['attack_incidents']} attacks, "
             f"{m['labels']['benign_incidents']} benign"]
    for title, fn in _SECTIONS:
        header, rows = fn(m)
        parts.append(f"\n{title}\n" + (_text_table(header, rows) if rows else "(none)"))
        if fn is _attack_table:
            parts.append(textwrap.fill(_ATTACK_LEGEND, width=100))
        if fn is _cohort_table:
            r = m["repay_cohort"]
            parts.append(f"cohort accounts: {r['cohort_accounts']}; rate ratio after repayment / "
                         f"otherwise: freezes {rate(r['rate_ratio'])}, "
                         f"challenges {rate(r.get('challenge_rate_ratio'))} (target: no higher, <= 1)"
                         + (" << higher" if misses("repay_freeze_rate_ratio", r["rate_ratio"])
                            or misses("repay_challenge_rate_ratio", r.get("challenge_rate_ratio")) else ""))
    return "\n".join(parts)


#: The targets (issue 18, "Done when"): figure -> (direction, value, how it reads). A figure that
#: misses its target is flagged beside it, in the terminal and in report.md.
TARGETS: dict[str, tuple[str, float, str]] = {
    "stopped_before_loss": (">=", 0.99, ">= 99%"),
    "legit_frozen_per_30d": ("<=", 0.0005, "<= 0.05%"),
    "legit_closed_per_30d": ("<=", 0.0, "0"),
    "worst_benign_situation_frozen": ("<=", 0.01, "<= 1%"),
    "challenged_on_ordinary_days_per_30d": ("<=", 0.005, "<= 0.5%"),
    "challenges_per_lookalike_situation": ("<=", 1.0, "<= 1"),
    "locked_out_share": ("<=", 0.0005, "<= 0.05%"),
    "slow_checks_per_30d": ("<=", 0.01, "<= 1%"),
    "closed_without_analyst_verdict": ("<=", 0.0, "0"),
    "repay_freeze_rate_ratio": ("<=", 1.0, "<= 1: no higher"),
    "repay_challenge_rate_ratio": ("<=", 1.0, "<= 1: no higher"),
}


def misses(name: str, value: float | None) -> bool:
    """Whether ``value`` misses the target of figure ``name`` (no target or no value: False).

    >>> misses("stopped_before_loss", 0.9), misses("repay_challenge_rate_ratio", 1.4), misses("x", 3)
    (True, True, False)
    """
    target = TARGETS.get(name)
    if target is None or value is None:
        return False
    op, bound, _ = target
    return value < bound if op == ">=" else value > bound


def _flag(name: str, value: float | None, short: bool = False) -> str:
    """``'  << misses target >= 99%'`` when ``value`` misses its target, else ``''``."""
    if not misses(name, value):
        return ""
    return " <<" if short else f"  << misses target {TARGETS[name][2]}"


def _worst(name: str | None, value: float | None, values: Sequence[float | None], none_text: str | None = None) -> str:
    """The worst of several rows, named only when it is worse than another row: ``'all 0.0%'``
    when every row has the same value; ``none_text`` when the worst value is 0 (nothing to name);
    ``'-'`` when there is no row.

    >>> _worst("a", 0.0, [0.0, 0.0], "none frozen"), _worst("a", 0.5, [0.5, 0.5]), _worst("a", 0.2, [0.2, 0.9])
    ('none frozen', 'all 50.0%', '20.0% (a)')
    """
    known = [v for v in values if v is not None]
    if name is None or value is None or not known:
        return "-"
    if none_text is not None and value == 0:
        return none_text
    if len(known) > 1 and all(v == known[0] for v in known):
        return f"all {pct(known[0])}"
    return f"{pct(value)} ({name})"


def _headline_items(m: Mapping[str, Any]) -> list[tuple[str, str]]:
    h = m["headline"]
    by_scn = h.get("stopped_before_loss_by_scenario", {})
    worst = _worst(h["worst_scenario"], h["worst_scenario_stopped_before_loss"], list(by_scn.values()))
    benign_rows = [r.get("frozen_share") for r in m.get("benign_situations", {}).values()]
    benign = _worst(h["worst_benign_situation"], h["worst_benign_situation_frozen"], benign_rows, "none frozen (0.0%)")
    items = [
        (f"attacks stopped before loss ({h.get('scoring', 'v1')} scoring)",
         pct(h["stopped_before_loss"]) + _flag("stopped_before_loss", h["stopped_before_loss"])),
        ("worst scenario, stopped before loss",
         worst + _flag("stopped_before_loss", h["worst_scenario_stopped_before_loss"])),
    ]
    items += [(f"  {name}", pct(v) + _flag("stopped_before_loss", v)) for name, v in by_scn.items()]
    items += [
        ("legitimate accounts frozen per 30 days",
         pct(h["legit_frozen_per_30d"], 2) + _flag("legit_frozen_per_30d", h["legit_frozen_per_30d"])),
        ("legitimate accounts closed per 30 days",
         pct(h["legit_closed_per_30d"], 2) + _flag("legit_closed_per_30d", h["legit_closed_per_30d"])),
        ("worst look-alike situation, frozen",
         benign + _flag("worst_benign_situation_frozen", h["worst_benign_situation_frozen"])),
    ]
    if "challenged_on_ordinary_days_per_30d" in h:
        ratio_f, ratio_c = h["repay_freeze_rate_ratio"], h["repay_challenge_rate_ratio"]
        repay_flag = (" << higher than the rest (target: no higher)"
                      if misses("repay_freeze_rate_ratio", ratio_f) or misses("repay_challenge_rate_ratio", ratio_c)
                      else "")
        items += [
            ("legitimate accounts challenged on ordinary days per 30 days",
             pct(h["challenged_on_ordinary_days_per_30d"], 2)
             + _flag("challenged_on_ordinary_days_per_30d", h["challenged_on_ordinary_days_per_30d"])),
            ("challenges per look-alike situation",
             rate(h["challenges_per_lookalike_situation"])
             + _flag("challenges_per_lookalike_situation", h["challenges_per_lookalike_situation"])),
            ("holders locked out (accounts, share of all)",
             f"{h['locked_out_accounts']} ({pct(h['locked_out_share'], 2)})" + _flag("locked_out_share", h["locked_out_share"])),
            ("hours frozen, legitimate accounts", num(h["legit_frozen_hours"], 1)),
            ("slow checks (id_check) per 30 days",
             pct(h.get("slow_checks_per_30d"), 2) + _flag("slow_checks_per_30d", h.get("slow_checks_per_30d"))),
            ("hours held, legitimate accounts / all", f"{num(h.get('legit_hours_held'), 1)} / {num(h.get('hours_held'), 1)}"),
            ("closed without analyst verdict",
             str(h["closed_without_analyst_verdict"])
             + _flag("closed_without_analyst_verdict", h["closed_without_analyst_verdict"])),
            ("repaid-in-24h rate ratio, freezes / challenges", f"{rate(ratio_f)} / {rate(ratio_c)}" + repay_flag),
        ]
    items.append(("alert precision", pct(h["alert_precision"])))
    return items


def format_headline(m: Mapping[str, Any]) -> str:
    """The headline figures, one per line."""
    items = _headline_items(m)
    w = max(len(k) for k, _ in items)
    return "\n".join(f"{k.ljust(w)}  {v}" for k, v in items)


# -- plots ------------------------------------------------------------------------------------

def _plots(m: Mapping[str, Any], out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    _threshold_plot(plt, m, out / PLOTS["threshold"])
    _time_to_freeze_plot(plt, m, out / PLOTS["time_to_freeze"])
    _stopped_plot(plt, m, out / PLOTS["stopped"])


def _label_apart(ax, points: Sequence[tuple[str, float, float]], min_gap: float = 0.07) -> None:
    """Annotate the points whose labels would not overlap: a label is skipped when it lies within
    ``min_gap`` (a share of the axes) of one already placed."""
    placed: list[tuple[float, float]] = []
    to_axes = ax.transAxes.inverted()
    for text, x, y in points:
        ax_x, ax_y = to_axes.transform(ax.transData.transform((x, y)))
        if any(abs(ax_x - px) < min_gap * 1.6 and abs(ax_y - py) < min_gap for px, py in placed):
            continue
        placed.append((ax_x, ax_y))
        ax.annotate(text, (x, y), fontsize=7, textcoords="offset points", xytext=(4, -10))


def fitted_limits(xs: Sequence[float]) -> tuple[float, float]:
    """Axis limits that fit the points: from a little left of 0 to 15% past the largest value
    (a floor of 0.001 when every point is 0).

    >>> [round(v, 6) for v in fitted_limits([0.0, 0.0004, 0.0002])], fitted_limits([0.0])
    ([-1.2e-05, 0.00046], (-3e-05, 0.001))
    """
    top = max(max(xs, default=0.0), 0.0)
    if top == 0:
        return -3e-05, 0.001
    return -0.03 * top, top * 1.15


def _threshold_plot(plt, m: Mapping[str, Any], path: Path) -> None:
    """Attacks flagged before loss against legitimate accounts frozen, as θ moves: x counts
    freezes and closes (older metrics without them: every flagged account, said on the axis)."""
    curve = m["threshold_curve"]
    frozen = curve.get("legit_frozen")
    x_series = frozen if frozen is not None else curve["legit_flagged"]
    xs = [0.0 if v is None else v for v in x_series]
    ys = [0.0 if v is None else v for v in curve["catch_rate"]]
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.plot(xs, ys, "-o", markersize=2.5, label="risk >= θ (θ from 0 to 1)")
    op = curve["operating_point"]
    if op["catch_rate"] is not None or op["legit_flagged"] is not None:
        ax.plot([op["legit_flagged"] or 0.0], [op["catch_rate"] or 0.0], "o", color="C3",
                label="the policy's actual freezes (attacks: stopped before loss)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlim(*fitted_limits(xs + [op["legit_flagged"] or 0.0]))
    fig.canvas.draw()  # the limits are final: label positions can be measured
    _label_apart(ax, [(f"θ={t:.1f}", x, y) for t, x, y in zip(curve["threshold"], xs, ys)
                      if round(t * 100) % 10 == 0])
    ax.set_xlabel("share of legitimate accounts frozen or closed with risk >= θ" if frozen is not None
                  else "share of legitimate accounts with any alert or command of risk >= θ")
    ax.set_ylabel("attacks with a decision of risk >= θ before loss")
    ax.set_title("Detection vs false freezes over the threshold θ")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _time_to_freeze_plot(plt, m: Mapping[str, Any], path: Path) -> None:
    """How long attacks ran before their first freeze, in hours (log axis), whole incidents."""
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    hours = [max(o["time_to_freeze_s"], 1.0) / 3600 for o in m["incidents"] if o["time_to_freeze_s"] is not None]
    fig, ax = plt.subplots(figsize=(6, 4))
    if hours:
        lo, hi = 1 / 3600, max(max(hours) * 1.01, 1.0)
        n_bins = max(5, min(30, int(math.log10(hi / lo) * 5)))
        bins = [lo * (hi / lo) ** (i / n_bins) for i in range(n_bins + 1)]
        ax.hist(hours, bins=bins, color="C0")
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(f"Time to freeze (n = {len(hours)} frozen attacks)")
    else:
        ax.text(0.5, 0.5, "no attack incident was frozen", ha="center", va="center",
                transform=ax.transAxes)
        ax.set_title("Time to freeze")
    ax.set_xlabel("hours from incident start to first freeze (log; <= 1 s shown at 1 s)")
    ax.set_ylabel("attack incidents")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _stopped_plot(plt, m: Mapping[str, Any], path: Path) -> None:
    """Share of attacks with a loss stopped before it, per scenario, n on every bar; a scenario
    with no attack with a loss has no bar ("n/a"), not 0%."""
    scn = m["attacks"]["scenarios"]
    rows = [(name, row) for name, row in scn.items()] + [("ALL", m["attacks"]["all"])]
    fig, ax = plt.subplots(figsize=(max(5, 0.8 * len(rows) + 2), 4))
    for i, (name, row) in enumerate(rows):
        share, n = row["stopped_before_loss_share"], row.get("with_loss", 0)
        if share is None or not n:
            ax.annotate("n/a\n(no loss)", (i, 0.01), ha="center", va="bottom", fontsize=7, color="0.4")
            continue
        ax.bar(i, share, color="C1" if name == "ALL" else "C0")
        ax.annotate(f"{100 * share:.0f}%\nn={n}", (i, share), ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(rows)), [name for name, _ in rows], rotation=30, ha="right", fontsize=8)
    ax.set_ylim(0, 1.18)
    ax.set_ylabel("stopped before loss (n = attacks with a loss)")
    ax.set_title("Attacks stopped before loss, per scenario")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- attacks stopped against friction, over several runs ----------------------------------------

def curve_point(label: str, m: Mapping[str, Any]) -> dict[str, Any]:
    """One point of :func:`friction_curve` from a ``metrics.json`` dictionary."""
    h = m["headline"]
    return {"label": label,
            "challenged_on_ordinary_days_share": h.get("challenged_on_ordinary_days_share"),
            "challenged_on_ordinary_days_per_30d": h.get("challenged_on_ordinary_days_per_30d"),
            "stopped_before_loss": h.get("stopped_before_loss"),
            "legit_frozen_per_30d": h.get("legit_frozen_per_30d"),
            "locked_out_share": h.get("locked_out_share"),
            "challenges_per_lookalike_situation": h.get("challenges_per_lookalike_situation")}


def friction_curve(points: Sequence[tuple[str, Mapping[str, Any]]], path: str | os.PathLike[str],
                   ceiling: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Plot attacks stopped before loss (y) against the share of legitimate accounts challenged
    on ordinary days per 30 days (x), one point per ``(label, metrics)``, joined in the given
    order; with ``ceiling`` (:func:`evaluation.ceiling.ceiling_curve`) the supervised ceiling's
    curve on the same axes. Write the PNG to ``path`` and return the points (missing figures
    are None and not drawn)."""
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    pts = [curve_point(label, m) for label, m in points]
    fig, ax = plt.subplots(figsize=(6.5, 4.8))
    lines: list[tuple[list[float], list[float]]] = []
    drawn = [p for p in pts if p["challenged_on_ordinary_days_per_30d"] is not None and p["stopped_before_loss"] is not None]
    if drawn:
        xs = [p["challenged_on_ordinary_days_per_30d"] for p in drawn]
        ys = [p["stopped_before_loss"] for p in drawn]
        lines.append((xs, ys))
        ax.plot(xs, ys, "-o", markersize=5, color="C3", label="the policy (closed loop, v3 scoring)")
        for p, x, y in zip(drawn, xs, ys):
            ax.annotate(p["label"], (x, y), fontsize=7, textcoords="offset points", xytext=(4, -10))
    if ceiling:
        cx = ceiling["challenged_on_ordinary_days_per_30d"]
        cy = ceiling["stopped_before_loss"]
        pairs = [(x, y) for x, y in zip(cx, cy) if x is not None and y is not None]
        if drawn:  # the ceiling up to a little past the policy's friction, so both can be read
            limit = max(lines[0][0]) * 3
            if limit > 0:
                kept = [(x, y) for x, y in pairs if x <= limit]
                pairs = kept or pairs
        if pairs:
            pairs.sort()
            lines.append(([x for x, _ in pairs], [y for _, y in pairs]))
            ax.plot(*lines[-1], "-", color="C0", label="supervised ceiling over the engine's features "
                                                      "(a flag counted as a stop)")
    if not lines:
        ax.text(0.5, 0.5, "no point has both figures", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("legitimate accounts challenged on ordinary days, per 30 days")
    ax.set_ylabel("attacks stopped (policy) / flagged (ceiling) before loss" if ceiling
                  else "attacks stopped before loss (share)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlim(*fitted_limits([x for line in lines for x in line[0]]))
    ax.set_title("Attacks stopped against friction")
    ax.grid(alpha=0.3)
    if lines:
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(Path(path), dpi=110)
    plt.close(fig)
    return pts


def format_ceiling(curve: Mapping[str, Any], m: Mapping[str, Any]) -> str:
    """The ceiling beside the policy: at the policy's own friction, stopped overall and per
    attack scenario; and a few points of the ceiling's curve."""
    h = m["headline"]
    at = curve.get("at_policy_friction")
    tr, sc = curve.get("training", {}), curve.get("scored", {})
    lines = [f"\nCeiling (supervised model over the engine's features; trained on {tr.get('events')} events, "
             f"{tr.get('attacker_events')} of attackers; ROC-AUC here {rate(sc.get('auc'))})"]
    if at is not None:
        rows = [["ALL ATTACKS", pct(h["stopped_before_loss"]), pct(at["stopped_before_loss"])]]
        rows += [[n, pct(h["stopped_before_loss_by_scenario"].get(n)), pct(v)] for n, v in at["by_scenario"].items()]
        lines.append(f"at the policy's friction ({pct(h.get('challenged_on_ordinary_days_per_30d'), 2)} challenged "
                     f"on ordinary days per 30 days; ceiling θ={at['threshold']:.2f} at "
                     f"{pct(at['challenged_on_ordinary_days_per_30d'], 2)}):")
        lines.append(_text_table(["scenario", "policy: stopped before loss", "ceiling: flagged before loss"], rows))
    from .ceiling import at_friction

    rows = []
    for x in (0.005, 0.01, 0.02, 0.05, 0.1, 0.2):
        p = at_friction(curve, x)
        if p is not None:
            rows.append([pct(x, 1), f"{p['threshold']:.4g}", pct(p["challenged_on_ordinary_days_per_30d"], 2),
                         pct(p["stopped_before_loss"])])
    lines.append(_text_table(["friction at most", "θ", "challenged on ordinary days / 30 d", "flagged before loss"], rows))
    return "\n".join(lines)


def format_curve(points: Sequence[Mapping[str, Any]]) -> str:
    """The points of a friction curve as a text table."""
    header = ["run", "challenged on ordinary days", "per 30 days", "stopped before loss",
              "frozen per 30 days", "locked out", "challenges per situation"]
    rows = [[p["label"], pct(p["challenged_on_ordinary_days_share"], 2), pct(p["challenged_on_ordinary_days_per_30d"], 2),
             pct(p["stopped_before_loss"]), pct(p["legit_frozen_per_30d"], 2), pct(p["locked_out_share"], 2),
             rate(p["challenges_per_lookalike_situation"])] for p in points]
    return _text_table(header, rows)


# -- the folder -------------------------------------------------------------------------------

def _markdown(m: Mapping[str, Any]) -> str:
    ev = m["events"]
    lines = ["# atoguard evaluation", "",
             f"Events: {ev['count']} on {ev['accounts']} accounts over {num(ev['observed_days'], 2)} days. "
             f"Incidents: {m['labels']['attack_incidents']} attacks, {m['labels']['benign_incidents']} benign. "
             f"Outputs: " + ", ".join(f"{v} {k}" for k, v in m["outputs"]["decisions"].items()) + ".",
             "", "## Headline", "",
             _md_table(["figure", "value"], [list(i) for i in _headline_items(m)])]
    for title, fn in _SECTIONS:
        header, rows = fn(m)
        lines += ["", f"## {title}", "", _md_table(header, rows) if rows else "(none)"]
        if fn is _attack_table:
            lines += ["", _ATTACK_LEGEND + "."]
        if fn is _cohort_table:
            r = m["repay_cohort"]
            lines += ["", f"Accounts in the cohort (at least one repayment): {r['cohort_accounts']}. "
                          f"Rate ratio (after repayment / otherwise): {rate(r['rate_ratio'])}; "
                          "a ratio at or below 1 means repaying customers are frozen no more often "
                          "than the rest (read it with the freeze counts: a handful of freezes "
                          "makes a noisy ratio)."]
    lines += ["", "## Plots", "",
              f"![detection vs false freezes]({PLOTS['threshold']})", "",
              f"![time to freeze]({PLOTS['time_to_freeze']})", "",
              f"![stopped before loss]({PLOTS['stopped']})", "",
              "## Definitions", ""]
    lines += [f"- **{k}**: {v}" for k, v in m["definitions"].items()]
    if m.get("inputs"):
        lines += ["", "## Input lines", "", _md_table(["file", "kind of line", "count"],
                  [[f, k, str(v)] for f, counts in m["inputs"].items() for k, v in sorted(counts.items())])]
    return "\n".join(lines) + "\n"


def write_report(m: Mapping[str, Any], directory: str | os.PathLike[str]) -> Path:
    """Write ``report.md``, ``metrics.json`` and the PNG plots into ``directory`` (created)."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_bytes(orjson.dumps(m, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
    _plots(m, out)
    (out / "report.md").write_text(_markdown(m), encoding="utf-8")
    return out
