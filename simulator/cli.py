"""Synthetic account traffic with ground truth.

Writes contract events for N accounts over D days (JSON Lines, one {"topic", "value"} a line, in
event-time order) and, beside them, one label line per incident: account_id, scenario, label
(ato | legit), start_ts, end_ts, first_loss_ts (the attacker's first payment / transfer_out /
withdrawal / loan_draw, null if none and for legit) and the event_ids of the incident.
The same --seed and options give byte-identical files; time starts at --start, never the clock.

The population: homes in ~90 cities (mostly GB, DE, FR, ES, IT, NL, PL), 1-3 devices each,
stable home broadband, carrier addresses that change per session (some IPv6), a few VPN users,
daily rhythms by local time, habitual merchants and payees, and a loan cycle for credit users.
About 3-4 events per account per day.

Each account gets at most one scenario; --rate-NAME is the share of accounts that get NAME.

benign (label legit):
  travel             a flight abroad, days of life there on roaming/hotel addresses, flight back
  new_phone          a new device id (new model or a fresh install), device_bound, life on it
  shared_tablet      one family tablet (device id) used by two accounts of one household
  repay_redraw       repays a loan and draws again within hours, or asks other lenders
  password_reset     a few login failures, a reset, a login, from the usual device
  corporate_nat      an office: 5-40 accounts behind one NAT address on weekday working hours
  trip_new_phone     booked at home, a trip abroad, a new phone there (restored, same SIM)
  lost_phone_recovery  phone lost, a replacement SIM, a new phone, password reset from home
  repay_new_phone    repays the loan, a new phone days later, borrows again from it
  household_device   signs in on a housemate's laptop or tablet at home for a few evenings

attacks (label ato), each one varied (infrastructure, device, gaps, steps, cash-out):
  credential_stuffing  a botnet sprays logins over many accounts; the successes are taken over
                       (accounts only tried are labelled credential_stuffing_attempt, no loss;
                       --no-attempt-labels leaves them unlabelled)
  phishing_takeover    new device and place, credential changes, payee, the account drained
  sim_swap_payout      sim_change, password reset and login on a new device, payout
  session_hijack       the victim's session and device id replayed from another ASN, no login
  impossible_travel    attacker logs in >1,000 km away within minutes of the victim
  slow_takeover        a quiet new device for 2-10 days, then the cash-out
  warmed_device        a bound device warmed for days at night from addresses the holder never
                       used; e-mail/phone changed, then drained (a share has the documents)
  mule_ring            3-20 accounts taken over in one evening, all paying one new mule payee
  remote_access_scam   the holder's own phone driven by a caller: a "safe account" payee, paid

A changed scenario mix: --mix NAME=SHARE or NAME=FACTORx, comma-separated, sets a scenario's
share, or multiplies it (applied after the --rate-NAME options), e.g. twice the phishing and
session hijacks, half the stuffing:
  --mix phishing_takeover=2x,session_hijack=2x,credential_stuffing=0.5x

Labels (contract v2): every ato incident carries attacker_passes, the challenge methods its
attacker passes by how the attack works (simulator/methods.py, ATTACKER_KIT: a SIM swap passes
sms_otp, a real-time phishing relay the one-time codes and payment_password, push fatigue
app_push, stuffing, stolen sessions and stolen passwords nothing; plus the contact points the
attacker moved to themselves: email_change -> email_otp, phone_change -> sms_otp, mfa_change ->
totp). A legit situation that narrows what the holder can pass carries holder_passes (lost
phone: no app_push/passkey; abroad without SMS; someone else's tablet). After the incidents,
one line per account: {"account_id": ..., "label": "enrolled", "methods": [...]}, drawn with
the shares of --enrol.

example:
  atoguard simulate --accounts 2000 --days 14 --seed 1 --out events.jsonl --labels labels.jsonl
  atoguard simulate --accounts 2000 --days 14 --seed 1 --mix phishing_takeover=2x,session_hijack=2x,credential_stuffing=0.5x --out e.jsonl --labels l.jsonl
  atoguard simulate --accounts 500 --days 3 --rate-phishing-takeover 0.05 --out e.jsonl --labels l.jsonl
  atoguard simulate --accounts 1000 --days 2 --labels l.jsonl --to-kafka --rate 500
  atoguard simulate --accounts 5000 --days 30 --seed 13 --partners --out e.jsonl --labels l.jsonl

Partners (contract v3, "Partners' signals"): --partners adds lines of topic signals from an
e-mail provider (phishing, stuffing, breach notices, holders' own password changes and
sign-outs), a carrier (SIM swaps, holders' new SIMs) and another lender (the same thief),
each seeing only part of it, some after the loss; --false-partner a lender whose every signal
is false. See simulator/partners.py.
"""

from __future__ import annotations

import argparse
import os
import sys

from detectors.contract import METHODS
from simulator.config import DEFAULT_START, SCENARIOS, SimConfig, parse_mix

_DEFAULTS = SimConfig()


def configure(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("population")
    g.add_argument("--accounts", type=int, default=1000, help="number of accounts (default 1000)")
    g.add_argument("--days", type=int, default=7, help="days simulated (default 7)")
    g.add_argument("--seed", type=int, default=0, help="seed of every random draw (default 0)")
    g.add_argument("--start", default=DEFAULT_START, help=f"first midnight, ISO 8601 UTC (default {DEFAULT_START})")
    g.add_argument("--credit-share", type=float, default=_DEFAULTS.credit_share, help="share of credit users (default %(default)s)")
    g.add_argument("--vpn-share", type=float, default=_DEFAULTS.vpn_share, help="share of VPN users (default %(default)s)")
    g.add_argument("--ipv6-share", type=float, default=_DEFAULTS.ipv6_share, help="IPv6 share of addresses, roughly (default %(default)s)")

    g = parser.add_argument_group("scenarios (share of accounts; at most one scenario per account)")
    for name in SCENARIOS:
        default = getattr(_DEFAULTS, f"rate_{name}")
        g.add_argument(f"--rate-{name.replace('_', '-')}", dest=f"rate_{name}", type=float, default=default,
                       metavar="SHARE", help=f"{name} (default {default})")  # fmt: skip
    g.add_argument("--mix", default=None, metavar="NAME=SHARE|NAME=FACTORx,...",
                   help="change the scenario mix: set a share or multiply it, e.g. "
                        "phishing_takeover=2x,session_hijack=2x,credential_stuffing=0.5x,travel=0.03")  # fmt: skip
    g.add_argument("--no-attempt-labels", action="store_true",
                   help="do not label accounts a stuffing campaign only tried (credential_stuffing_attempt)")  # fmt: skip

    g = parser.add_argument_group("challenge methods (contract v2 labels)")
    shares = ",".join(f"{m}={v:g}" for m, v in _DEFAULTS.enrolment_shares().items())
    g.add_argument("--enrol", default=None, metavar="METHOD=SHARE,...",
                   help=f"share of accounts that enrolled each method (default {shares})")
    g.add_argument("--phishing-push-fatigue-share", type=float, default=_DEFAULTS.phishing_push_fatigue_share,
                   help="share of phishing takeovers that are push-fatigue attacks (pass app_push) "
                        "instead of real-time relays (pass the one-time codes and payment_password); "
                        "default %(default)s")  # fmt: skip

    g = parser.add_argument_group("partners' signals (contract v3, topic signals; simulator/partners.py)")
    g.add_argument("--partners", action="store_true",
                   help="an e-mail provider, a carrier and another lender report part of the attacks (many not, "
                        "some after the loss) and some holders too (breach notices, own password changes, sign-outs)")
    g.add_argument("--false-partner", action="store_true",
                   help="add a lender that reports only false signals (account_disabled, credential_compromise) on "
                        "3%% of ordinary accounts; works with or without --partners")

    g = parser.add_argument_group("output")
    g.add_argument("--out", help="events file (JSON Lines); required unless --to-kafka")
    g.add_argument("--labels", required=True, help="ground-truth labels file (JSON Lines)")
    g.add_argument("--late-location-share", type=float, default=0.0,
                   help="share of location fixes written late, out of order (default 0: strict event-time order)")  # fmt: skip
    g.add_argument("--late-location-max-s", type=float, default=_DEFAULTS.late_location_max_s,
                   help="how late, at most, in seconds (default %(default)s)")  # fmt: skip
    g.add_argument("--quiet", action="store_true", help="no progress bar")

    g = parser.add_argument_group("kafka")
    g.add_argument("--to-kafka", action="store_true", help="publish the events instead of writing --out")
    g.add_argument("--bootstrap-servers", default=os.environ.get("ATOGUARD_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
                   help="Kafka bootstrap servers (default $ATOGUARD_BOOTSTRAP_SERVERS or 127.0.0.1:9092)")  # fmt: skip
    g.add_argument("--topic-prefix", default="ato.", help="topic prefix (default %(default)s)")
    g.add_argument("--rate", type=float, default=0.0, metavar="EVENTS_PER_S", help="publish rate; 0 = as fast as possible")
    g.add_argument("--respond", action="store_true",
                   help="with --to-kafka: play the account service live (simulator/account_service.py), by "
                        "the rules of `atoguard replay --respond`: answer the worker's step-ups and freezes on "
                        "<prefix>device and withhold refused attackers' events; the events are simulated to "
                        "--out (or a temporary file) first, then published")  # fmt: skip
    g.add_argument("--worker-group", default=None, metavar="GROUP",
                   help="with --respond: the worker's consumer group, whose progress paces the answers "
                        "(default <prefix>worker, what `atoguard run` uses)")  # fmt: skip
    g.add_argument("--transcript", default=None, metavar="FILE",
                   help="with --respond: write every input sent (events, answers) and withheld line here")


def parse_enrol(text: str) -> dict[str, float]:
    """``"face=0.5,passkey=0.2"`` -> ``{"enrol_face": 0.5, "enrol_passkey": 0.2}``; ValueError
    naming the item otherwise."""
    out: dict[str, float] = {}
    for item in (x.strip() for x in text.split(",")):
        if not item:
            continue
        name, sep, value = (x.strip() for x in item.partition("="))
        if not sep or name not in METHODS:
            raise ValueError(f"--enrol {item!r}: expected METHOD=SHARE with METHOD one of {', '.join(METHODS)}")
        try:
            out[f"enrol_{name}"] = float(value)
        except ValueError:
            raise ValueError(f"--enrol {item!r}: {value!r} is not a share") from None
    return out


def config_from_args(args: argparse.Namespace) -> SimConfig:
    """The SimConfig of the command line: --rate-NAME options, then --mix on top; ValueError on bad input."""
    fields = {name: getattr(args, f"rate_{name}") for name in SCENARIOS}
    if getattr(args, "mix", None):
        fields.update(parse_mix(args.mix, fields))
    enrol = parse_enrol(args.enrol) if getattr(args, "enrol", None) else {}
    return SimConfig(
        accounts=args.accounts, days=args.days, seed=args.seed, start=args.start,
        credit_share=args.credit_share, vpn_share=args.vpn_share, ipv6_share=args.ipv6_share,
        late_location_share=args.late_location_share, late_location_max_s=args.late_location_max_s,
        phishing_push_fatigue_share=args.phishing_push_fatigue_share,
        **{f"rate_{k}": v for k, v in fields.items()}, **enrol,
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from simulator.generate import FileSink, KafkaSink, Simulation

    if not args.to_kafka and not args.out:
        print("atoguard simulate: --out FILE is required (or --to-kafka)", file=sys.stderr)
        return 2
    try:
        config = config_from_args(args)
    except ValueError as exc:
        print(f"atoguard simulate: {exc}", file=sys.stderr)
        return 2
    if args.respond and not args.to_kafka:
        print("atoguard simulate: --respond needs --to-kafka (offline, use atoguard replay --respond)", file=sys.stderr)
        return 2
    partners = None
    if getattr(args, "partners", False) or getattr(args, "false_partner", False):
        if args.to_kafka:
            print("atoguard simulate: --partners/--false-partner write signals lines to a file; the topic "
                  "signals is not published yet (use --out and atoguard replay)", file=sys.stderr)
            return 2
        from simulator.partners import PartnerConfig
        partners = PartnerConfig(honest=bool(args.partners), false_partner=bool(args.false_partner))
    sim = Simulation(config, label_stuffing_attempts=not args.no_attempt_labels, partners=partners)
    if args.respond:
        return _run_responding(args, sim)
    if args.to_kafka:
        sink = KafkaSink(args.bootstrap_servers, args.topic_prefix, args.rate)
        where = f"kafka {args.bootstrap_servers} ({args.topic_prefix}*)"
    else:
        sink = FileSink(args.out)
        where = args.out
    stats = sim.run(sink, args.labels, progress=not args.quiet)
    labels = sim.labels()
    by_scenario: dict[str, int] = {}
    for label in labels:
        by_scenario[label["scenario"]] = by_scenario.get(label["scenario"], 0) + 1
    rate = stats.events / stats.seconds if stats.seconds else 0.0
    print(f"{stats.events} events -> {where} in {stats.seconds:.1f} s ({rate:,.0f} events/s); "
          f"{len(labels)} incidents -> {args.labels}", file=sys.stderr)  # fmt: skip
    if sim.partners is not None:
        print(f"  {sim.partners.sent} partners' signals among them (topic signals)", file=sys.stderr)
    if not args.quiet:
        for name in sorted(by_scenario):
            print(f"  {name:28s} {by_scenario[name]}", file=sys.stderr)
    return 0


def _run_responding(args: argparse.Namespace, sim) -> int:
    """``--to-kafka --respond``: simulate to a file (the labels must be whole before the first
    answer), then publish it through the live account service."""
    import tempfile

    from simulator.account_service import AccountService, ServiceError, publish_file
    from simulator.generate import FileSink, KafkaSink
    from streams.config import load_config
    from streams.respond import load_people

    tmp = None
    out = args.out
    if not out:
        fd, out = tempfile.mkstemp(suffix=".jsonl", prefix="atoguard-sim-")
        os.close(fd)
        tmp = out
    transcript = open(args.transcript, "wb") if args.transcript else None
    try:
        sim.run(FileSink(out), args.labels, progress=not args.quiet)
        key = load_config(None).keys.command_hmac
        try:
            service = AccountService(load_people(args.labels), args.bootstrap_servers, args.topic_prefix, key,
                                     worker_group=args.worker_group, transcript=transcript)
        except ServiceError as exc:
            print(f"atoguard simulate: {exc}", file=sys.stderr)
            return 1
        try:
            sink = KafkaSink(args.bootstrap_servers, args.topic_prefix, args.rate, service=service)
            n = publish_file(out, sink)
            sink.close()
        finally:
            service.close()
        if service.pending():
            print(f"atoguard simulate: {service.pending()} inputs not confirmed by the worker "
                  f"({args.worker_group or args.topic_prefix + 'worker'}); is it running?", file=sys.stderr)
            return 1
        st = service.stats
        print(f"{st.events_sent} events -> kafka {args.bootstrap_servers} ({args.topic_prefix}*), "
              f"{st.withheld} withheld; commands {dict(st.commands)}; answers {dict(st.answers)}; "
              f"bad signatures {st.bad_signatures}; of {n} simulated", file=sys.stderr)
        return 0
    finally:
        if transcript is not None:
            transcript.close()
        if tmp is not None:
            os.unlink(tmp)
