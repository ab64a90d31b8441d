"""scripts/research.py end to end on a tiny protocol (two variants, a month each), run here:
the choice, both periods with their baselines, the files README quotes, clear refusals."""

import importlib.util
import json
import textwrap
from pathlib import Path

import pytest

from thetadesk.config import DEFAULT_CONFIG

ROOT = Path(__file__).resolve().parents[3]
spec = importlib.util.spec_from_file_location("research_cli", ROOT / "scripts" / "research.py")
cli = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cli)

pytestmark = pytest.mark.usefixtures("quiet_logs")


def _protocol(tmp_path, grid="{strategy.short_delta: [0.25, 0.30]}"):
    path = tmp_path / "tiny.yaml"
    path.write_text(textwrap.dedent(f"""\
        name: tiny
        base: {DEFAULT_CONFIG}
        fixed: {{market.tick_seconds: 1800, risk_reports.monte_carlo_scenarios: 0}}
        periods:
          in_sample: {{start: 2014-01-02, end: 2014-01-31}}
          held_out: {{start: 2014-02-03, end: 2014-02-28}}
        selection: {{objective: sharpe, min_trades: 0}}
        grid: {grid}
        """))
    return path


def test_research_chooses_in_sample_and_measures_held_out_next_to_baselines(tmp_path):
    out = tmp_path / "out"
    code = cli.main(["--protocol", str(_protocol(tmp_path)), "--out", str(out), "--local",
                     "--no-walk-forward", "--no-crash", "--quiet"])

    assert code == 0
    result = json.loads((out / "tiny.json").read_text())
    assert result["protocol"]["variants"] == 2
    assert [v["label"] for v in result["in_sample_variants"]] == ["short_delta=0.25",
                                                                  "short_delta=0.3"]
    ins = [v.get("sharpe") or float("-inf") for v in result["in_sample_variants"]]
    chosen = result["choice"]["label"]
    assert chosen == result["in_sample_variants"][ins.index(max(ins))]["label"]
    for period in ("in_sample", "held_out"):
        runs = result["periods"][period]
        for who in ("chosen", "base"):
            assert set(runs[who]["baselines"]) == {"buy_and_hold", "put_write"}
            assert runs[who]["run"]["start"] >= result["protocol"]["periods"][period][0]
    text = (out / "tiny.md").read_text()
    assert "| metric | ThetaDesk (chosen) | shipped before | buy and hold | put-write |" in text
    assert "2 variants tried" in text


def test_research_refuses_a_bad_protocol_with_exit_2(tmp_path, capsys):
    code = cli.main(["--protocol", str(_protocol(tmp_path, grid="{strategy.nope: [1]}")),
                     "--out", str(tmp_path / "out"), "--local", "--quiet"])
    assert code == 2
    assert "strategy.nope: unknown key" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_walk_forward_is_reported_next_to_the_baselines_of_its_sessions():
    import yaml

    from thetadesk.clock import MarketCalendar

    sessions = MarketCalendar().sessions(cli.date(2014, 2, 3), 15)
    wf = {"equity": [{"session": d.isoformat(), "equity": 100_000.0} for d in sessions],
          "out_of_sample": {"capital": 100_000.0, "annual_return": 0.0, "sharpe": None,
                            "sharpe_rf": None, "max_drawdown": 0.0, "trades": 0},
          "windows": [], "in_sample_sessions": 10, "out_of_sample_sessions": 5,
          "embargo_sessions": 0}
    walked = cli.with_baselines(yaml.safe_load(DEFAULT_CONFIG.read_text()), wf)

    assert set(walked["baselines"]) == {"buy_and_hold", "put_write"}
    assert walked["baselines"]["buy_and_hold"]["sessions"] == 15
    text = "\n".join(cli.walk_forward_markdown(walked))
    assert "Over the same sessions: buy and hold: annual return" in text
    assert "the put-write: annual return" in text
