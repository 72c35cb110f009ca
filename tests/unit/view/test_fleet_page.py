"""
The fleet page's pure logic: what it shows, in which order, and that text
from the fleet cannot become markup (node ids and site names are chosen by
whoever runs a node). The page in a real browser: tests/integration/view/.
"""

import html.parser
import os
import re
import stat

import pytest

from saltext_edge.view import page as fleet_page
from saltext_edge.view import page_example, page_parts


class _Page(html.parser.HTMLParser):
    """Collect the elements and the text a reader of the page gets."""

    def __init__(self):
        super().__init__()
        self.tags = []
        self.scripts = []
        self.sites = []  # data-site of each <details>, in page order
        self.text = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        if tag == "script":
            self._in_script = True
            self.scripts.append("")
        if tag == "details":
            self.sites.append(attrs.get("data-site"))

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.scripts[-1] += data
        else:
            self.text.append(data)


def parse(text):
    page = _Page()
    page.feed(text)
    page.close()
    return page


def site(**kw):
    base = {
        "online": 0,
        "late": 0,
        "offline": 0,
        "never_seen": 0,
        "degraded": False,
        "quality": {"good": 0, "fair": 0, "poor": 0, "down": 0, "unknown": 0},
        "trend": {},
        "history": [],
        "nodes": {},
    }
    base.update(kw)
    return base


def report(sites, **kw):
    base = {
        "generated_at": "2026-12-02T10:00:00Z",
        "totals": {
            "online": 0,
            "late": 0,
            "offline": 0,
            "never_seen": 0,
            "pending": 0,
            "refused": 0,
        },
        "sites": sites,
        "pending": [],
        "refused": {},
        "flapping": [],
    }
    base.update(kw)
    return base


def test_worst_sites_come_first():
    rep = report(
        {
            "calm": site(online=10),
            "half-dark": site(online=5, offline=5),
            "degraded-few": site(online=9, offline=1, degraded=True),
            "late-ones": site(online=8, late=2),
            "poor-links": site(online=10, quality={"poor": 4, "good": 6}),
        }
    )
    assert parse(fleet_page.render(rep)).sites == [
        "degraded-few",
        "half-dark",
        "late-ones",
        "poor-links",
        "calm",
    ]


HOSTILE = [
    '<script>document.title="pwned"</script>',
    '"><img src=x onerror="document.title=1">',
    "</details></summary><h1>fake</h1>",
    "&lt;already-escaped&gt;",
]


@pytest.mark.parametrize("evil", HOSTILE)
def test_fleet_text_is_inert(evil):
    node = {
        "status": "offline",
        "last_seen": evil,
        "last_seen_kind": evil,
        "uplink": {"quality": evil, "rtt_ms": evil, "jitter_ms": None, "loss_pct": None},
        "flapping": False,
        "admission": evil,
        "admitted_by": evil,
    }
    rep = report(
        {evil: site(offline=1, nodes={evil: node}, trend={"1h": {"rtt_ms_median": evil}})},
        generated_at=evil,
        pending=[evil],
        refused={evil: evil},
        flapping=[evil],
    )
    text = fleet_page.render(rep)
    page = parse(text)
    # the page's own script is the only script; no element came from the data
    assert len(page.scripts) == 1 and "pwned" not in page.scripts[0]
    assert [t for t, _ in page.tags].count("h1") == 1
    assert not any(t == "img" for t, _ in page.tags)
    assert not any(k.startswith("on") for _, attrs in page.tags for k in attrs)
    # ... and the reader sees the hostile text as text
    assert evil in "".join(page.text)
    assert page.sites == [evil]


def test_page_is_self_contained():
    text = fleet_page.render(page_example.example_report(nodes=50, sites=5))
    page = parse(text)
    for tag, attrs in page.tags:
        for key in ("src", "href", "action", "srcset", "poster"):
            assert key not in attrs, (tag, attrs)
    assert "@import" not in text and "url(" not in text
    csp = [
        a["content"]
        for t, a in page.tags
        if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"
    ]
    assert csp and "default-src 'none'" in csp[0]
    # the CSP allows exactly the inline script the page carries, by hash
    import base64
    import hashlib

    digest = base64.b64encode(hashlib.sha256(page.scripts[0].encode()).digest()).decode()
    assert f"'sha256-{digest}'" in csp[0]


def test_counts_and_states_shown_as_words_not_only_colour():
    node = {
        "status": "offline",
        "last_seen": "2026-12-02T09:30:00Z",
        "last_seen_kind": "heartbeat",
        "uplink": {"quality": "poor", "rtt_ms": 180.5, "jitter_ms": 12.0, "loss_pct": 7.5},
        "flapping": True,
        "admission": "accepted",
        "admitted_by": "edge_token",
    }
    rep = report(
        {
            "sh-3": site(
                online=7,
                late=2,
                offline=1,
                degraded=True,
                quality={"good": 7, "poor": 3},
                nodes={"n1": node},
            )
        },
        totals={"online": 7, "late": 2, "offline": 1, "never_seen": 0, "pending": 3, "refused": 1},
    )
    text = " ".join(parse(fleet_page.render(rep)).text)
    for words in (
        "7 online",
        "2 late",
        "1 offline",
        "degraded",
        "3 poor",
        "7 good",
        "flapping",
        "(last)",
        "180.5",
        "7.5",
        "30 min",
        "9 node(s) not listed",
    ):
        assert words in text, words
    # the ISO UTC time is the fallback text inside <time datetime=...>
    assert '<time datetime="2026-12-02T09:30:00Z">2026-12-02T09:30:00Z</time>' in fleet_page.render(
        rep
    )


def test_sparkline_from_history():
    history = [
        {
            "at": f"2026-12-02T{h:02d}:00:00Z",
            "online": 10 - (h == 5) * 4,
            "offline": (h == 5) * 4,
            "rtt_ms_median": 20 + h,
        }
        for h in range(6)
    ]
    svg = page_parts.sparkline(history)
    assert svg.startswith("<svg") and svg.count("<polyline") == 2
    assert "online 60-100 %" in svg and "median RTT 20-25 ms" in svg
    assert page_parts.sparkline(history[:1]) == ""
    assert page_parts.sparkline([]) == ""


def test_missing_or_odd_fields_render():
    assert "No sites" in fleet_page.render({})
    text = fleet_page.render(report({"x": {"nodes": {"a": None}, "online": "nan?"}}))
    assert 'data-site="x"' in text


def test_nodes_sorted_worst_first_within_a_site():
    nodes = {
        "a-online": {"status": "online", "uplink": {"quality": "good"}},
        "b-late": {"status": "late"},
        "c-offline": {"status": "offline"},
        "d-online-down": {"status": "online", "uplink": {"quality": "down"}},
    }
    text = fleet_page.render(report({"s": site(online=2, late=1, offline=1, nodes=nodes)}))
    order = re.findall(r"<tr><td>([a-z-]+)</td>", text)
    assert order == ["c-offline", "b-late", "d-online-down", "a-online"]


def test_size_for_5000_nodes_under_2_mb():
    text = fleet_page.render(page_example.example_report(nodes=5000, sites=50))
    assert len(text.encode("utf-8")) < 2_000_000


def test_write_is_atomic_and_0644(tmp_path):
    path = tmp_path / "fleet.html"
    path.write_text("old")
    written = fleet_page.write(page_example.example_report(nodes=5, sites=1), str(path))
    assert written == str(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    assert path.read_text().startswith("<!DOCTYPE html>")
    assert [p.name for p in tmp_path.iterdir()] == ["fleet.html"]
    with pytest.raises(OSError):
        fleet_page.write({}, str(tmp_path / "missing-dir" / "x.html"))
    assert [p.name for p in tmp_path.iterdir()] == ["fleet.html"]
