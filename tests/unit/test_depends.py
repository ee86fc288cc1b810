"""Dependencies (heartbeat.depends) as tables, with an injected clock.

The parent P beats every 1 s with a 5 s grace (window 5 s); its dependent D every
1 s with no grace (window 1 s); tolerance 1 s.  So when both stop at T0, D is due
to alert at T0+2 but P is late only after T0+5: D is held until P's alert deadline.
"""

from __future__ import annotations

import json

import aiohttp
import msgspec
import pytest

from heartbeat.config import ChannelSpec, build_notifiers
from heartbeat.depends import (
    NAMED,
    Dependencies,
    Dependency,
    Parent,
    decide,
    find_cycle,
    parents_of,
    returned_at,
)
from heartbeat.durations import SECOND
from heartbeat.engine import Beat, EngineConfig, Reason, Record, alert_deadline, evaluate
from heartbeat.notify import words
from heartbeat.quiet import LOUD, Hush, Quiet, QuietKind
from heartbeat.subjects import Subjects

P = "heartbeat.dc1.uplink"
D = "heartbeat.dc1.web"
T0 = 1_700_000_000.0
CFG = EngineConfig(repeat_every_s=60.0, tolerance_s=1.0, checkpoint_every_s=60.0)
RULES = (Dependency(("heartbeat.dc1.>",), P),)


def rec(
    subject: str = D,
    at: float = T0,
    *,
    interval: float = 1.0,
    grace: float | None = None,
    alert: bool = False,
    back_at: float | None = None,
) -> Record:
    r = Record(
        subject=subject,
        interval_ns=round(interval * SECOND),
        grace_ns=None if grace is None else round(grace * SECOND),
        last_seen=at,
        generated_at="x",
        back_at=back_at,
    )
    if alert:
        r = msgspec.structs.replace(
            r, alert_active=True, alert_id="a1", alert_last_seen=at, last_notified=at + 6
        )
    return r


def parent(at: float = T0, *, returned: float = 0.0, **kw: object) -> Parent:
    view = rec(P, at, grace=5.0, **kw)  # type: ignore[arg-type]
    return Parent(P, view, alert_deadline(view, CFG), returned)


def suppressed(until: float | None = None, ended: float = 0.0) -> Hush:
    return Hush(Quiet(QuietKind.SUPPRESSED, until, P), ended)


HELD_UNTIL = T0 - 0.25 + 5.0 + 1.0  # the parent's alert deadline (its last beat T0-0.25)

# (name, dependent view, parents, now, hush expected)
CASES = [
    ("no known parent: loud", rec(), [], T0 + 2.5, LOUD),
    (
        "dependent ok, parent late: nothing to keep quiet",
        rec(at=T0 + 9),
        [parent()],
        T0 + 9.5,
        LOUD,
    ),
    ("parent late: a missing dependent is suppressed", rec(), [parent()], T0 + 5.5, suppressed()),
    ("parent alerting: suppressed", rec(), [parent(alert=True)], T0 + 7.0, suppressed()),
    (
        "rack stop, short dependent window: held until the parent's alert deadline",
        rec(),
        [parent(T0 - 0.25)],
        T0 + 2.5,
        suppressed(HELD_UNTIL),
    ),
    (
        "held, then the parent is late: suppressed with no end",
        rec(),
        [parent(T0 - 0.25)],
        T0 + 5.0,
        suppressed(),
    ),
    (
        "parent beat after the dependent's last beat but before its first missed one: held",
        rec(),
        [parent(T0 + 0.5)],
        T0 + 2.5,
        suppressed(T0 + 0.5 + 6.0),
    ),
    (
        "parent heard after the dependent's first missed beat: it stopped on its own",
        rec(),
        [parent(T0 + 1.5)],
        T0 + 2.5,
        LOUD,
    ),
    (
        "long dependent window: not down while the parent is late",
        rec(interval=10.0),
        [parent()],
        T0 + 6.0,
        LOUD,
    ),
    (
        "long dependent window: down later, parent still late: suppressed",
        rec(interval=10.0),
        [parent()],
        T0 + 11.5,
        suppressed(),
    ),
    (
        "alerted before the parent went missing: its repeats are suppressed",
        rec(alert=True),
        [parent(T0 + 3.0)],
        T0 + 9.5,
        suppressed(),
    ),
    (
        "alerted, parent up: loud (repeats go out)",
        rec(alert=True),
        [parent(T0 + 9)],
        T0 + 9.5,
        LOUD,
    ),
    (
        "parent back (record's back_at): ended is its return",
        rec(),
        [parent(T0 + 30, back_at=T0 + 29.5)],
        T0 + 30.5,
        Hush(None, T0 + 29.5),
    ),
    (
        "parent back (a return seen in its beats, never alerted): ended is that return",
        rec(),
        [parent(T0 + 30, returned=T0 + 30)],
        T0 + 30.5,
        Hush(None, T0 + 30),
    ),
    (
        "parent beat since its alert (not yet resolved): back, not suppressed",
        rec(),
        [Parent(P, msgspec.structs.replace(rec(P, T0 + 30, alert=True), alert_last_seen=T0), 0, 0)],
        T0 + 30.5,
        LOUD,
    ),
]


@pytest.mark.parametrize(
    ("name", "view", "parents", "now", "want"), CASES, ids=[c[0] for c in CASES]
)
def test_decide(name: str, view: Record, parents: list[Parent], now: float, want: Hush) -> None:
    assert decide(view, parents, now) == want


def test_any_missing_parent_suppresses_and_the_latest_return_counts() -> None:
    other = Parent("heartbeat.dc1.power", rec("heartbeat.dc1.power", T0 + 30), T0 + 33, T0 + 20)
    got = decide(rec(), [parent(), other], T0 + 30.5)
    assert got == Hush(Quiet(QuietKind.SUPPRESSED, None, P), T0 + 20)


# --- the rules in the engine: a dependent alerts a full window after the return -----


def test_a_dependent_still_missing_alerts_a_window_after_the_parent_is_back() -> None:
    d = rec()
    back = T0 + 30.0
    p = [parent(back, back_at=back)]
    for now, want in [
        (T0 + 10, Reason.NONE),
        (back + 1.9, Reason.NONE),
        (back + 2.1, Reason.ALERT),
    ]:
        hush = decide(d, p if now > back else [parent()], now)
        out = evaluate(D, d, None, now, CFG, hush=hush, new_alert_id="x", channels=["c"])
        assert out.reason is want, now


def test_a_suppressed_dependent_has_no_deadline_and_a_held_one_waits_for_its_parent() -> None:
    out = evaluate(D, rec(), None, T0 + 6, CFG, hush=decide(rec(), [parent()], T0 + 6))
    assert out.due == float("inf") and out.record is None
    hush = decide(rec(), [parent(T0 - 0.25)], T0 + 2.5)
    out = evaluate(D, rec(), None, T0 + 2.5, CFG, hush=hush)
    assert out.reason is Reason.NONE and out.due == HELD_UNTIL


def test_resolving_an_alert_records_the_return() -> None:
    alerting = rec(P, T0, grace=5.0, alert=True)
    back = msgspec.structs.replace(alerting, last_seen=T0 + 30)
    out = evaluate(P, back, None, T0 + 30.2, CFG, channels=["c"])
    assert out.reason is Reason.RESOLVED and out.record is not None
    assert out.record.back_at == T0 + 30
    again = msgspec.json.decode(msgspec.json.encode(out.record), type=Record)
    assert again.back_at == T0 + 30  # durable: a new leader reads it from KV


def test_the_parents_alert_and_repeat_name_its_missing_dependents() -> None:
    deps = (49, ("heartbeat.dc1.a", "heartbeat.dc1.b"))
    p = rec(P, T0, grace=5.0)
    out = evaluate(P, p, None, T0 + 6.5, CFG, dependents=deps, new_alert_id="x", channels=["c"])
    assert out.reason is Reason.ALERT and out.notification is not None
    n = out.notification
    assert n.dependents_missing == 49 and n.dependents == deps[1]
    assert out.record is not None
    rep = evaluate(P, out.record, None, T0 + 67, CFG, dependents=(3, (D,)), channels=["c"])
    assert rep.reason is Reason.REPEAT and rep.notification is not None
    assert rep.notification.dependents_missing == 3
    quiet = evaluate(P, p, None, T0 + 6.5, CFG, new_alert_id="x", channels=["c"])
    assert quiet.notification is not None and "dependents" not in quiet.notification.body()


# --- wording and the webhook body --------------------------------------------------


def test_the_count_and_five_names_read_on_every_channel() -> None:
    names = tuple(f"heartbeat.dc1.h{i:02d}" for i in range(NAMED))
    p = rec(P, T0, grace=5.0)
    n = evaluate(P, p, None, T0 + 7, CFG, dependents=(49, names), new_alert_id="x").notification
    assert n is not None
    assert words.headline(n) == (
        "heartbeat.dc1.uplink is DOWN: no heartbeat for 7s (window 5s); 49 dependents are "
        "also silent: heartbeat.dc1.h00, heartbeat.dc1.h01, heartbeat.dc1.h02, "
        "heartbeat.dc1.h03, heartbeat.dc1.h04 and 44 more"
    )
    body = n.body()
    assert body["dependents_missing"] == 49 and body["dependents"] == list(names)
    one = msgspec.structs.replace(n, dependents_missing=1, dependents=(D,))
    assert words.headline(one).endswith("; 1 dependent is also silent: heartbeat.dc1.web")
    evil = msgspec.structs.replace(n, dependents_missing=1, dependents=("a\nFAKE\x1b[31m",))
    assert "\n" not in words.message(evil) and "\x1b" not in words.message(evil)
    assert "\n" not in str(words.details(evil)["dependents"])
    assert words.details(n)["dependents"] == ", ".join(names)


# --- the rules from the config ------------------------------------------------------


def test_parents_of_never_names_the_subject_itself() -> None:
    rules = (
        Dependency(("heartbeat.dc1.>",), P),
        Dependency(("heartbeat.*.web",), "heartbeat.core"),
    )
    assert parents_of(rules, D) == (P, "heartbeat.core")
    assert parents_of(rules, P) == ()
    assert parents_of(rules, "heartbeat.dc2.db") == ()


@pytest.mark.parametrize(
    ("rules", "cycle"),
    [
        ((Dependency(("heartbeat.dc1.>",), P),), None),  # matches itself: not a cycle
        ((Dependency(("a.b",), "a.c"), Dependency(("a.c",), "a.d")), None),  # a chain
        ((Dependency(("a.b",), "a.c"), Dependency(("a.c",), "a.b")), ["a.c", "a.b", "a.c"]),
        (
            (Dependency(("dc1.>",), "dc1.uplink"), Dependency(("dc1.>",), "dc1.power")),
            ["dc1.uplink", "dc1.power", "dc1.uplink"],
        ),
        (
            (Dependency(("x.a",), "x.b"), Dependency(("x.b",), "x.c"), Dependency(("x.*",), "x.a")),
            ["x.b", "x.c", "x.a", "x.b"],
        ),
    ],
)
def test_find_cycle(rules: tuple[Dependency, ...], cycle: list[str] | None) -> None:
    assert find_cycle(rules) == cycle


def beat(at: float, *, interval: float = 1.0, grace: float | None = None) -> Beat:
    return Beat(
        last_seen=at,
        interval_ns=round(interval * SECOND),
        grace_ns=None if grace is None else round(grace * SECOND),
        host="",
        description="",
        generated_at="x",
    )


@pytest.mark.parametrize(
    ("prev", "new", "record", "want"),
    [
        (beat(T0, grace=5), beat(T0 + 1, grace=5), None, 0.0),
        (beat(T0, grace=5), beat(T0 + 6, grace=5), None, T0 + 6),
        (None, beat(T0 + 30, grace=5), rec(P, T0, grace=5.0, alert=True), T0 + 30),  # restarted
        (None, beat(T0 + 30, grace=5), rec(P, T0, grace=5.0), 0.0),  # nothing to compare
    ],
)
def test_returned_at(prev: Beat | None, new: Beat, record: Record | None, want: float) -> None:
    assert returned_at(prev, new, record) == want


# --- the source over a replica's subjects ------------------------------------------


def fleet(n: int = 7) -> tuple[Subjects, Dependencies, list[str]]:
    subjects = Subjects(CFG)
    deps = Dependencies(subjects, RULES)
    deps.attach()
    members = [f"heartbeat.dc1.h{i:02d}" for i in range(n)]
    subjects.set_record(P, rec(P, T0 - 0.25, grace=5.0), 1)
    for i, s in enumerate(members):
        subjects.set_record(s, rec(s, T0), i + 2)
    subjects.set_record("heartbeat.dc2.db", rec("heartbeat.dc2.db", T0), 99)
    return subjects, deps, members


def test_a_restarted_leader_decides_from_the_records_alone() -> None:
    subjects, deps, members = fleet()
    assert deps.hush(members[0], T0 + 2.5) == suppressed(HELD_UNTIL)
    assert deps.hush(members[0], T0 + 6) == suppressed()
    assert deps.hush("heartbeat.dc2.db", T0 + 6) == LOUD
    # The parent's alert resolved at T0+30 (back_at in its record): a new leader agrees.
    subjects.set_record(P, rec(P, T0 + 30, grace=5.0, back_at=T0 + 30), 50)
    assert deps.hush(members[0], T0 + 30.5) == Hush(None, T0 + 30)


def test_a_parent_beat_wakes_the_dependents_it_kept_quiet_and_notes_its_return() -> None:
    subjects, deps, members = fleet()
    subjects.on_beat(P, beat(T0 - 0.25, grace=5))
    for s in members:
        assert deps.hush(s, T0 + 6).quiet is not None
    subjects.dirty.clear()
    subjects.on_beat(P, beat(T0 + 20, grace=5))  # back after a silence past its window
    assert subjects.dirty == set(members)
    assert deps.hush(members[0], T0 + 20.5) == Hush(None, T0 + 20)
    subjects.dirty.clear()
    subjects.on_beat(P, beat(T0 + 21, grace=5))
    assert subjects.dirty == set()  # nothing quiet any more: nothing to wake


def test_only_parents_beats_reach_the_source() -> None:
    subjects, _, members = fleet()
    seen: list[str] = []
    subjects.on_watched = lambda s, prev, b: seen.append(s)
    subjects.on_beat(members[0], beat(T0 + 1))
    subjects.on_beat(P, beat(T0 + 1, grace=5))
    assert seen == [P]


def test_the_parent_counts_its_missing_dependents() -> None:
    subjects, deps, members = fleet()
    assert deps.dependents_for(P, T0 + 0.5) is None  # parent up
    assert deps.dependents_for(members[0], T0 + 6.5) is None  # not a parent
    assert deps.dependents_for(P, T0 + 6.5) == (7, tuple(members[:NAMED]))
    subjects.on_beat(members[0], beat(T0 + 6))  # one came back
    assert deps.dependents_for(P, T0 + 6.5) == (6, tuple(members[1 : NAMED + 1]))
    subjects.on_beat("heartbeat.dc1.new", beat(T0))  # a new dependent is counted too
    count = deps.dependents_for(P, T0 + 6.5)
    assert count is not None and count[0] == 7


def test_no_rules_keep_nothing_quiet() -> None:
    subjects = Subjects(CFG)
    deps = Dependencies(subjects, ())
    subjects.set_record(D, rec(), 1)
    assert deps.hush(D, T0 + 9) == LOUD and deps.dependents_for(D, T0 + 9) is None


def test_retiring_a_parent_wakes_its_dependents_and_they_speak_for_themselves() -> None:
    subjects, deps, members = fleet()
    assert all(deps.hush(s, T0 + 6).quiet is not None for s in members)
    subjects.dirty.clear()
    subjects.retire(P)
    assert subjects.dirty == set(members)
    assert deps.hush(members[0], T0 + 6) == LOUD


def test_a_dependent_told_down_before_its_parent_went_missing_is_told_up() -> None:
    d = rec(alert=True)
    hush = decide(d, [parent(T0 + 3.0)], T0 + 9.5)
    assert hush.quiet is not None  # its repeats are held back while the parent is missing
    assert evaluate(D, d, None, T0 + 70, CFG, hush=hush).reason is Reason.NONE
    up = msgspec.structs.replace(d, last_seen=T0 + 10)
    hush = decide(up, [parent(T0 + 3.0)], T0 + 10.1)
    out = evaluate(D, up, None, T0 + 10.1, CFG, hush=hush, channels=["c"])
    assert out.reason is Reason.RESOLVED and out.notification is not None


async def test_every_channel_says_the_count() -> None:
    specs = [
        ChannelSpec("slack", "slack", {"url": "http://x/s"}),
        ChannelSpec("teams", "teams", {"url": "http://x/t"}),
        ChannelSpec("discord", "discord", {"url": "http://x/d"}),
        ChannelSpec("telegram", "telegram", {"token": "t", "chat_id": "1"}),
        ChannelSpec("ntfy", "ntfy", {"url": "http://x/n"}),
        ChannelSpec("email", "email", {"host": "h", "sender": "a@b", "recipients": ["c@d"]}),
        ChannelSpec("pagerduty", "pagerduty", {"routing_key": "k"}),
        ChannelSpec("opsgenie", "opsgenie", {"api_key": "k"}),
        ChannelSpec("pushover", "pushover", {"user": "u", "token": "t"}),
        ChannelSpec("webhook", "webhook", {"url": "http://x/w"}),
    ]
    p = rec(P, T0, grace=5.0)
    n = evaluate(P, p, None, T0 + 7, CFG, dependents=(49, (D,)), new_alert_id="x").notification
    assert n is not None
    async with aiohttp.ClientSession() as session:
        built = {c.name: c for c in build_notifiers(specs, session)}
    said: dict[str, str] = {}
    for name, c in built.items():
        render = {
            "email": lambda c: str(c.message(n)),
            "ntfy": lambda c: c.request(n)[0].decode(),
            "opsgenie": lambda c: json.dumps(c.request(n)),
            "pagerduty": lambda c: json.dumps(c.event(n)),
            "pushover": lambda c: json.dumps(c.form(n)),
            "webhook": lambda c: c.request(n, T0)[0].decode(),
        }.get(name, lambda c: json.dumps(c.payload(n)))
        said[name] = render(c)
    for name, text in said.items():
        assert "49 dependents" in text or '"dependents_missing":49' in text, name
