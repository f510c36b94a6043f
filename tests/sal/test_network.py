"""The mycelium client against two simulated nodes that peer with each other over loopback."""

import pytest

from sal.context import JobContext, running
from sal.network import MalformedAddress, MalformedEndpoint, PeerExists, PeerNotFound, ReplyTimeout, endpoint_text
from sal.network.drivers.mycelium import MyceliumClient
from sal.network.drivers.mycelium.simulator import create_simulator

ALICE, BOB = "A" * 43, "B" * 43  # two signers' keys (only their text matters here)


def job(signer: str) -> JobContext:
    return JobContext(job_id="job", signer=signer, node_id="node", deadline=float("inf"))


@pytest.fixture
def two_nodes(mycelium):
    """A dials B's listen port, as daemons peer: B lists A as inbound."""
    a_node, b_node = mycelium(), mycelium()
    a, b = MyceliumClient(a_node.url), MyceliumClient(b_node.url)
    a.add_peer(b_node.endpoint)
    yield a, b, b_node.endpoint
    a.close()
    b.close()


def test_node_info(two_nodes):
    a, _, _ = two_nodes
    info = a.info()
    assert len(info["nodePubkey"]) == 64
    assert info["nodeSubnet"].endswith("/64") and info["nodeIp"].startswith(info["nodeSubnet"].split("::")[0][:2])


def test_peers_and_routes(two_nodes):
    a, b, b_endpoint = two_nodes
    peers = a.peers()
    assert [(endpoint_text(p), p["connectionState"], p["type"]) for p in peers] == [(b_endpoint, "alive", "static")]
    assert [(p["type"], p["connectionState"]) for p in b.peers()] == [("inbound", "alive")]  # from A's source port
    assert endpoint_text(b.peers()[0]) != b_endpoint
    assert [(route["subnet"], route["metric"]) for route in a.selected_routes()] == [(b.info()["nodeSubnet"], 0)]
    assert a.fallback_routes() == []
    with pytest.raises(PeerExists):
        a.add_peer(b_endpoint)
    with pytest.raises(MalformedEndpoint):
        a.add_peer("not-an-endpoint")
    a.remove_peer(b_endpoint)
    assert a.peers() == [] and a.selected_routes() == []
    with pytest.raises(PeerNotFound):
        a.remove_peer(b_endpoint)


def test_a_message_sent_on_one_node_arrives_on_the_other(two_nodes):
    a, b, _ = two_nodes
    b_key = b.info()["nodePubkey"]
    message_id = a.send(b_key, b"deploy web1", topic=b"zeronode")
    assert b.receive(topic=b"other") is None
    message = b.receive(topic=b"zeronode", timeout=2)
    assert (message.id, message.payload, message.topic) == (message_id, b"deploy web1", b"zeronode")
    assert message.src_pk == a.info()["nodePubkey"]
    assert b.receive() is None  # popped


def test_send_by_overlay_ip_and_peek(two_nodes):
    a, b, _ = two_nodes
    a.send(b.info()["nodeIp"], b"by ip")
    assert b.receive(peek=True, timeout=2).payload == b"by ip"  # delivered about 0.1 s after the send
    assert b.receive().payload == b"by ip"


def test_request_and_reply(serve_app, two_nodes):
    import threading

    a, b, _ = two_nodes

    def answer():
        question = b.receive(timeout=5)
        b.reply(question, question.payload.upper())

    threading.Thread(target=answer).start()
    reply = a.send(b.info()["nodePubkey"], b"ping", reply_timeout=5)
    assert reply.payload == b"PING"
    with pytest.raises(ReplyTimeout) as info:
        a.send(b.info()["nodePubkey"], b"nobody answers", reply_timeout=1)
    assert len(info.value.message_id) == 16


def test_public_key_lookup(two_nodes):
    a, b, _ = two_nodes
    assert a.public_key(b.info()["nodeIp"]) == b.info()["nodePubkey"]
    assert a.public_key("400::1") is None
    assert a.public_key(a.info()["nodeIp"]) is None  # the daemon does not know its own
    for not_ipv6 in ("10.0.0.1", "b-node", ""):  # never asked: an IPv4 lookup drops the daemon's connection
        with pytest.raises(MalformedAddress):
            a.public_key(not_ipv6)
    with pytest.raises(MalformedAddress):
        a.send("10.0.0.1", b"taken by the daemon, and never delivered")


def test_unreachable_daemon_is_a_clear_error():
    from sal.network import NetworkError

    with pytest.raises(NetworkError, match="unreachable"):
        MyceliumClient("http://127.0.0.1:9").info()


def test_scripts_talk_over_the_network(two_nodes):
    import rhai
    from sal import registry

    a, b, _ = two_nodes
    engine = rhai.Engine()
    registry.register_all(engine, registry.NodeSals(network=a))
    with running(job(ALICE)):
        result = engine.eval(
            'let me = net_info(); let id = net_send(#{ to: to, payload: "hello", topic: "zn" });'
            '#{ me: me.public_key, id: id, peers: net_peers().map(|p| p.state) }',
            {"to": b.info()["nodePubkey"]},
        )
    assert result["me"] == a.info()["nodePubkey"] and result["peers"] == ["alive"]
    message = b.receive(topic=f"{ALICE}/zn".encode(), timeout=2)  # under its signer's name on the wire
    assert (message.id, message.payload) == (result["id"], b"hello")
    with running(job(ALICE)), pytest.raises(rhai.EvalError, match="unknown key 'body'"):
        engine.eval('net_send(#{ to: "x", body: "y" })')
    b.send(a.info()["nodePubkey"], b"back", topic=f"{ALICE}/zn".encode())
    with running(job(ALICE)):
        received = engine.eval('net_receive(#{ topic: "zn", timeout: 2 })')
        assert (received["payload"], received["topic"]) == ("back", "zn")
        assert engine.eval("net_receive()") is None


def test_tenants_do_not_read_each_others_messages(two_nodes):
    import rhai
    from sal import registry

    a, b, _ = two_nodes
    engine = rhai.Engine()
    registry.register_all(engine, registry.NodeSals(network=a))
    b.send(a.info()["nodePubkey"], b"for alice", topic=f"{ALICE}/inbox".encode())
    with running(job(BOB)):  # bob asks for the same topic, and for any: alice's message is not his
        assert engine.eval('net_receive(#{ topic: "inbox", timeout: 1 })') is None
        assert engine.eval("net_receive()") is None
    with running(job(ALICE)):
        assert engine.eval('net_receive(#{ topic: "inbox", timeout: 2 }).payload') == "for alice"
    with running(job(ALICE)), pytest.raises(rhai.EvalError, match="at most 200 bytes"):
        engine.eval(f'net_send(#{{ to: "x", payload: "y", topic: "{"t" * 201}" }})')


class Recording(MyceliumClient):
    """The real client, noting how long each receive was asked to wait."""

    def __init__(self, url: str):
        super().__init__(url)
        self.waits: list[int] = []

    def receive(self, *, topic=None, timeout=0, peek=False):
        self.waits.append(timeout)
        return super().receive(topic=topic, timeout=timeout, peek=peek)


def test_a_sal_call_never_waits_longer_than_its_job_has_left(serve_app):
    import time

    import rhai
    from sal import registry

    network = Recording(serve_app(create_simulator()))
    engine = rhai.Engine()
    registry.register_all(engine, registry.NodeSals(network=network))
    three_seconds_left = JobContext(job_id="job", signer=ALICE, node_id="node", deadline=time.monotonic() + 3)
    with running(three_seconds_left):
        assert engine.eval("net_receive(#{ timeout: 40 })") is None
    assert 1 <= len(network.waits) <= 3 and sum(network.waits) <= 3  # short polls, within the job's time
    network.waits.clear()
    with running(job(ALICE)):  # a job with time to spare waits as long as asked
        engine.eval("net_receive(#{ timeout: 2 })")
    assert sum(network.waits) == 2
    network.close()


def test_a_sal_call_that_waits_returns_when_its_job_is_cancelled(serve_app):
    import threading
    import time

    import rhai
    from sal import registry

    network = Recording(serve_app(create_simulator()))
    engine = rhai.Engine()
    registry.register_all(engine, registry.NodeSals(network=network))
    token = rhai.CancelToken()
    context = JobContext(job_id="job", signer=ALICE, node_id="node", deadline=time.monotonic() + 60, cancel=token)
    threading.Timer(1.0, token.cancel).start()
    with running(context):
        assert engine.eval("net_receive(#{ timeout: 40 })") is None
    assert token.cancelled and sum(network.waits) < 40  # heard within a poll of the cancel, not after 40 s
    network.close()
