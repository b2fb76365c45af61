"""The client against a real node: every call a user makes from a notebook or a Sage session."""

import sys
import threading

import pytest

import drover

PY = sys.executable


def test_a_job_is_submitted_waited_for_and_read(client):
    id = client.submit([PY, "-c", "import sys; print('hello'); print('oops', file=sys.stderr)"],
                       name="greet", timeout="1m")
    job = client.wait(id, timeout=60)
    assert job.succeeded and job.ended
    assert job.name == "greet" and job.exit_code == 0 and job.number >= 1
    assert client.logs(id) == "hello\n"
    assert client.logs(id, "stderr") == "oops\n"
    assert client.job(id).state == "succeeded"
    assert any(j.id == id for j in client.jobs())


def test_the_job_runs_here_in_this_environment(client, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DROVER_CLIENT_TEST", "from-the-notebook")
    id = client.submit("pwd; echo $DROVER_CLIENT_TEST")
    client.wait(id, timeout=60)
    assert client.logs(id).split() == [str(tmp_path), "from-the-notebook"]


def test_a_failure_carries_its_reason(client):
    job = client.wait(client.submit([PY, "-c", "raise SystemExit(3)"]), timeout=60)
    assert job.state == "failed" and job.exit_code == 3
    assert "exit_code: 3" in job.reason


def test_a_batch_and_its_results(client):
    ids = client.submit_batch(
        [client.spec([PY, "-c", f"import json, os; json.dump({{'n': {n}}}, open(os.environ['DROVER_OUTPUT_DIR'] + '/result.json', 'w'))"])
         for n in range(3)]
    )
    jobs = client.wait_all(ids, timeout=60)
    assert [j.state for j in jobs] == ["succeeded"] * 3
    assert [client.result(id) for id in ids] == [{"n": 0}, {"n": 1}, {"n": 2}]


def test_a_sweep_runs_each_value_and_collects_results(client):
    sweep = client.sweep([PY, "-c", "import json, os, sys; n = int(sys.argv[1]); "
                          "json.dump({'square': n * n}, open(os.environ['DROVER_OUTPUT_DIR'] + '/result.json', 'w'))",
                          "{}"], each="1..4", name="squares")
    assert sweep.name == "squares" and len(sweep.jobs) == 4
    client.wait_all(sweep.jobs, timeout=60)
    rows = client.results(sweep.id)
    assert [r["result"]["square"] for r in rows] == [1, 4, 9, 16]
    assert [r["state"] for r in rows] == ["succeeded"] * 4
    named = client.sweep([PY, "-c", "print(1)", "{n}", "{seed}"], each={"n": "1..2", "seed": [7, 8]})
    assert len(named.jobs) == 4


def test_events_stream_and_resume_where_they_left_off(client):
    first = client.submit("true")
    seen = []
    for event in client.events(since=0):
        seen.append(event)
        if event.job_id == first and event.state == "succeeded":
            break
    assert [e.state for e in seen if e.job_id == first][-1] == "succeeded"
    assert [e.seq for e in seen] == sorted({e.seq for e in seen}), "in order, no duplicates"
    # Resumed after the last seen: only what came after, nothing twice.
    second = client.submit("true")
    resumed = []
    for event in client.events(since=seen[-1].seq):
        resumed.append(event)
        if event.job_id == second and event.state == "succeeded":
            break
    assert resumed[0].seq == seen[-1].seq + 1
    assert all(e.job_id == second for e in resumed)
    assert {e.kind for e in resumed} >= {"submitted", "claimed", "started"}


def test_events_follow_a_node_restart(client, node):
    got = []

    def listen():
        for event in client.events(since=0):
            got.append(event)
            if event.state == "succeeded" and len([e for e in got if e.state == "succeeded"]) == 2:
                return

    listener = threading.Thread(target=listen, daemon=True)
    client.wait(client.submit("true"), timeout=60)
    listener.start()
    node.stop()
    node.start()
    client.wait(client.submit("true"), timeout=60)
    listener.join(60)
    assert not listener.is_alive(), f"the stream did not come back: {got}"
    seqs = [e.seq for e in got]
    assert seqs == sorted(set(seqs)), f"no event twice across the restart: {got}"


def test_cancel_stops_a_running_job(client):
    id = client.submit("sleep 60")
    for event in client.events(since=0, job=id):
        if event.state == "running":
            break
    answer = client.cancel(id)
    assert answer["id"] == id
    job = client.wait(id, timeout=30)
    assert job.state == "cancelled"


def test_logs_tail(client):
    id = client.submit([PY, "-c", "for i in range(1000): print(i)"])
    client.wait(id, timeout=60)
    assert client.logs(id, tail=2) == "998\n999\n"


def test_a_bad_spec_is_a_typed_error_with_the_nodes_message(client):
    with pytest.raises(drover.InvalidRequest) as raised:
        client.submit([PY, "-c", "pass"], timeout="soon")
    assert raised.value.field == "timeout"
    assert raised.value.status == 422
    assert "timeout" in raised.value.message
    with pytest.raises(drover.InvalidRequest) as raised:
        client.submit([])
    assert raised.value.field == "argv"
    with pytest.raises(drover.NotFound):
        client.job("01a23bb6-81ed-7503-a53e-3746ea60b712")
    with pytest.raises(drover.DroverError):
        client.job("not-an-id")


def test_a_wait_that_runs_out_says_which_jobs(client):
    id = client.submit("sleep 30")
    with pytest.raises(drover.WaitTimeout) as raised:
        client.wait(id, timeout=1)
    assert raised.value.pending == [id]
    client.cancel(id)


def test_a_wrong_token_is_refused(node):
    wrong = drover.connect(token="not-the-token-at-all-but-long-enough")
    with pytest.raises(drover.Unauthorized):
        wrong.jobs()


def test_no_node_is_named_clearly(tmp_path, monkeypatch):
    monkeypatch.delenv("DROVER_SERVER", raising=False)
    with pytest.raises(drover.NodeNotFound, match="drover serve"):
        drover.connect(data_dir=tmp_path)


def test_an_https_node_is_trusted_through_its_ca_file(tls_node, pki, monkeypatch):
    node = drover.connect(ca_file=pki / "ca.pem")
    assert node.url.startswith("https://127.0.0.1:")
    job = node.wait(node.submit(["sh", "-c", "echo over-tls"]), timeout=60)
    assert job.state == "succeeded"
    assert node.logs(job.id) == "over-tls\n"
    # The environment's way, as for the CLI.
    monkeypatch.setenv("DROVER_CA_FILE", str(pki / "ca.pem"))
    assert drover.connect().job(job.id).state == "succeeded"


def test_an_https_node_without_its_ca_is_an_untrusted_certificate(tls_node):
    with pytest.raises(drover.UntrustedCertificate) as raised:
        drover.connect().jobs()
    assert "certificate" in raised.value.reason
    assert "ca_file=" in str(raised.value)
