"""``python -m relq``: demo, report --json and import errors, as a user runs them."""

import json
import subprocess
import sys

from relq.cli import main


def test_report_json_has_the_contract_shape(demo_env, capsys):
    assert main(["report", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["responses"] > 0
    for pillar in ("trust", "commitment", "satisfaction"):
        assert set(report["pillars"][pillar]) >= {"mean", "ci", "n"}
        low, high = report["pillars"][pillar]["ci"]
        assert low <= report["pillars"][pillar]["mean"] <= high
    assert set(report["nps"]) >= {"score", "ci", "n", "promoters", "passives", "detractors"}
    assert (
        report["nps"]["n"]
        == report["nps"]["promoters"] + report["nps"]["passives"] + report["nps"]["detractors"]
    )
    assert set(report["rq"]) >= {"mean", "ci", "n"}


def test_report_period_narrows_the_responses(demo_env, capsys):
    main(["report", "--json"])
    everything = json.loads(capsys.readouterr().out)["responses"]
    main(["report", "--json", "--since", "2026-07-01", "--until", "2026-09-30"])
    quarter = json.loads(capsys.readouterr().out)["responses"]
    assert 0 < quarter < everything


def test_bad_date_is_one_clear_line_not_a_traceback(demo_env):
    run = subprocess.run(
        [sys.executable, "-m", "relq", "report", "--json", "--since", "yesterday"],
        capture_output=True,
        text=True,
    )
    assert run.returncode != 0
    assert "expected YYYY-MM-DD" in run.stderr and "Traceback" not in run.stderr


def test_import_of_a_missing_file_exits_nonzero_with_a_sentence(demo_env, tmp_path, capsys):
    assert main(["import", str(tmp_path / "nope.csv")]) == 2
    err = capsys.readouterr().err
    assert "no such file" in err and len(err.strip().splitlines()) == 1


def test_demo_command_replaces_the_demo_company_rather_than_adding_to_it(tmp_path, monkeypatch, capsys):
    from relq.ingest.demo import generate_demo

    monkeypatch.setenv("RELQ_DATABASE_URL", f"duckdb:///{tmp_path / 'relq.duckdb'}")
    assert main(["demo", "--customers", "300", "--seed", "3"]) == 0
    assert "300 customers" in capsys.readouterr().out
    assert main(["demo", "--customers", "300", "--seed", "3"]) == 0
    capsys.readouterr()
    main(["report", "--json"])
    assert json.loads(capsys.readouterr().out)["responses"] == len(
        generate_demo(customers=300, seed=3).responses
    )
