"""docker-py 7 against the daemon's Docker socket (DOCKER_HOST), run by tests/tests/docker.rs.

Every test asserts what a docker-py user gets back: output, exit codes, names and labels.
"""

import os
import time
import uuid

import docker
import pytest


@pytest.fixture(scope="module")
def client():
    # VMs boot under TCG on shared cores: a start can outlast docker-py's 60 s default.
    c = docker.from_env(timeout=180)
    yield c
    for x in c.containers.list(all=True):
        x.remove(force=True)
    c.close()


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_version_is_negotiated(client):
    assert client.version()["ApiVersion"] == "1.43"
    assert client.ping() is True


def test_run_returns_output_and_removes(client):
    out = client.containers.run("busybox", ["echo", "hi"], remove=True)
    assert out == b"hi\n"
    assert client.containers.list(all=True) == []


def test_run_failure_raises_with_exit_status(client):
    with pytest.raises(docker.errors.ContainerError) as e:
        client.containers.run("busybox", ["sh", "-c", "echo bad >&2; exit 2"], remove=True)
    assert e.value.exit_status == 2
    assert b"bad" in e.value.stderr


def test_detached_list_filters_logs_exec_wait_remove(client):
    name = unique("box")
    c = client.containers.run(
        "busybox",
        ["sh", "-c", "echo line1; echo line2; sleep 60"],
        detach=True,
        name=name,
        labels={"suite": "dockerpy"},
    )
    try:
        assert [x.name for x in client.containers.list(filters={"label": "suite=dockerpy"})] == [name]
        assert client.containers.list(filters={"label": "suite=other"}) == []
        assert client.containers.get(name).id == c.id
        c.reload()
        assert c.status == "running"
        assert c.labels["suite"] == "dockerpy"
        lines = []
        for chunk in c.logs(stream=True, follow=True):
            lines.append(chunk)
            if b"line2" in b"".join(lines):
                break
        assert b"".join(lines).startswith(b"line1\n")
        r = c.exec_run(["sh", "-c", "echo from-exec; exit 4"])
        assert r.exit_code == 4
        assert r.output == b"from-exec\n"
        c.kill()
        assert c.wait()["StatusCode"] == 137
    finally:
        c.remove(force=True)
    with pytest.raises(docker.errors.NotFound):
        client.containers.get(name)


def wait_exec_end(api, exec_id):
    deadline = time.time() + 60
    while True:
        info = api.exec_inspect(exec_id)
        if not info["Running"]:
            return info
        assert time.time() < deadline, info
        time.sleep(0.25)


def test_detached_exec_reports_its_end(client):
    api = client.api
    c = client.containers.run("busybox", ["sleep", "600"], detach=True, name=unique("ex"))
    try:
        # Started detached: running, then Running False and the exit code.
        e = api.exec_create(c.id, ["sh", "-c", "sleep 4; exit 3"])
        api.exec_start(e["Id"], detach=True)
        assert api.exec_inspect(e["Id"])["Running"] is True
        assert wait_exec_end(api, e["Id"])["ExitCode"] == 3
    finally:
        c.remove(force=True)


def test_low_level_attach_socket_gets_multiplexed_frames(client):
    api = client.api
    c = api.create_container("busybox", ["sh", "-c", "echo one; echo two >&2"])
    try:
        sock = api.attach_socket(c["Id"], params={"stdout": 1, "stderr": 1, "stream": 1})
        raw = getattr(sock, "_sock", sock)
        api.start(c["Id"])
        data = b""
        while True:
            d = raw.recv(4096)
            if not d:
                break
            data += d
        assert b"\x01\x00\x00\x00\x00\x00\x00\x04one\n" in data
        assert b"\x02\x00\x00\x00\x00\x00\x00\x04two\n" in data
        assert api.wait(c["Id"])["StatusCode"] == 0
    finally:
        api.remove_container(c["Id"], force=True)


def test_images_pull_list_tag_remove(client):
    registry = os.environ["TEST_REGISTRY"]
    repo = f"{registry}/{unique('dockerpy')}/busybox"
    assert client.images.get("busybox").tag(repo, "v1") is True
    for line in client.images.push(repo, tag="v1", stream=True, decode=True):
        assert "error" not in line, line
    client.images.remove(f"{repo}:v1")
    img = client.images.pull(repo, tag="v1")
    assert f"{repo}:v1" in img.tags
    tags = [t for i in client.images.list() for t in i.tags]
    assert f"{repo}:v1" in tags
    assert "busybox:latest" in tags
    client.images.remove(f"{repo}:v1")
    with pytest.raises(docker.errors.ImageNotFound):
        client.images.get(f"{repo}:v1")


def test_volumes(client):
    name = unique("vol")
    v = client.volumes.create(name, labels={"suite": "dockerpy"})
    assert v.name == name
    assert [x.name for x in client.volumes.list(filters={"label": "suite=dockerpy"})] == [name]
    out = client.containers.run("busybox", ["sh", "-c", "echo x > /v/f; cat /v/f"], volumes={name: {"bind": "/v", "mode": "rw"}}, remove=True)
    assert out == b"x\n"
    v.remove()
    with pytest.raises(docker.errors.NotFound):
        client.volumes.get(name)


def test_networks_list_shows_the_default_bridge(client):
    names = [n.name for n in client.networks.list()]
    assert names == ["bridge"]
    assert client.networks.get("bridge").attrs["Driver"] == "bridge"


def test_events_replay_a_window_with_filters(client):
    import time

    name = unique("ev")
    since = int(time.time())
    out = client.containers.run("busybox", ["true"], name=name, labels={"suite": "events"})
    assert out == b""
    c = client.containers.get(name)
    c.remove()
    until = int(time.time()) + 1
    got = list(client.events(decode=True, since=since, until=until, filters={"container": name}))
    actions = [e["Action"] for e in got]
    for want in ["create", "start", "die", "destroy"]:
        assert want in actions, actions
    assert actions.index("create") < actions.index("start") < actions.index("die") < actions.index("destroy")
    for e in got:
        assert e["Type"] == "container"
        assert e["Actor"]["ID"] == c.id
        assert e["Actor"]["Attributes"]["name"] == name
        assert e["Actor"]["Attributes"]["suite"] == "events"
        assert e["scope"] == "local"
        assert e["status"] == e["Action"]
        assert e["id"] == c.id
        assert e["from"] == e["Actor"]["Attributes"]["image"]
        assert since <= e["time"] <= until
        assert e["timeNano"] // 1_000_000_000 == e["time"]
    die = [e for e in got if e["Action"] == "die"][0]
    assert die["Actor"]["Attributes"]["exitCode"] == "0"
    only_die = list(
        client.events(decode=True, since=since, until=until, filters={"container": name, "event": "die"})
    )
    assert [e["Action"] for e in only_die] == ["die"]
    assert list(client.events(decode=True, since=since, until=until, filters={"type": "volume", "container": name})) == []


def test_healthcheck_reaches_healthy(client):
    import time

    name = unique("hc")
    c = client.containers.run(
        "busybox",
        ["sleep", "600"],
        detach=True,
        name=name,
        healthcheck={"test": ["CMD-SHELL", "echo probe-ran"], "interval": 1_000_000_000, "retries": 2},
    )
    try:
        deadline = time.time() + 120
        health = {}
        while time.time() < deadline:
            health = client.api.inspect_container(c.id)["State"].get("Health") or {}
            if health.get("Status") == "healthy":
                break
            time.sleep(0.5)
        assert health.get("Status") == "healthy", health
        assert health["FailingStreak"] == 0
        assert health["Log"][-1]["ExitCode"] == 0
        assert health["Log"][-1]["Output"].startswith("probe-ran")
        assert [x.name for x in client.containers.list(filters={"health": "healthy"})] == [name]
        assert client.containers.list(filters={"health": "unhealthy"}) == []
    finally:
        c.remove(force=True)


def test_images_build_classic(client, tmp_path):
    (tmp_path / "Dockerfile").write_text(
        "FROM busybox AS build\n"
        "COPY msg.txt /work/msg.txt\n"
        "FROM busybox\n"
        "COPY --from=build /work/msg.txt /msg.txt\n"
        'CMD ["cat", "/msg.txt"]\n'
    )
    (tmp_path / "msg.txt").write_text("from docker-py\n")
    tag = unique("pybuild")
    image, logs = client.images.build(path=str(tmp_path), tag=tag, rm=True)
    streams = "".join(chunk.get("stream", "") for chunk in logs)
    assert "Step 4/4 : COPY --from=build /work/msg.txt /msg.txt\n" in streams
    assert f"Successfully tagged {tag}:latest\n" in streams
    assert f"{tag}:latest" in image.tags
    assert client.containers.run(image.id, remove=True) == b"from docker-py\n"

    # A gzip-encoded context, a Dockerfile in a subdirectory, build args and labels.
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "Alt").write_text('FROM busybox\nARG WHO=nobody\nLABEL who=$WHO\nCOPY msg.txt /alt.txt\n')
    tag2 = unique("pybuild")
    out = list(
        client.api.build(
            path=str(tmp_path),
            dockerfile="sub/Alt",
            gzip=True,
            buildargs={"WHO": "gz"},
            labels={"extra": "yes"},
            tag=tag2,
            decode=True,
        )
    )
    ids = [c["aux"]["ID"] for c in out if "aux" in c]
    assert len(ids) == 1 and ids[0].startswith("sha256:"), out
    labels = client.images.get(tag2).labels
    assert labels == {"who": "gz", "extra": "yes"}

    # A missing COPY source: docker-py's BuildError with the daemon's message.
    (tmp_path / "Dockerfile").write_text("FROM busybox\nCOPY missing.txt /\n")
    with pytest.raises(docker.errors.BuildError) as e:
        client.images.build(path=str(tmp_path), tag=unique("pybad"))
    assert 'COPY source "missing.txt" not found' in str(e.value)
