"""The hub's delivery rules: audiences, and a slow client never holding up others."""

import asyncio

from lcmgraph.server.hub import Hub


class FakeSocket:
    def __init__(self, stuck=False):
        self.sent, self.closed, self.close_code, self.stuck = [], False, None, stuck

    async def send_str(self, text):
        if self.stuck:
            await asyncio.Event().wait()  # a client that never reads
        self.sent.append(text)

    async def close(self, code, message):
        self.closed, self.close_code = True, code


def test_audiences_and_slow_clients():
    async def main():
        hub = Hub(buffer=3)
        alice, bob, ops, stuck = FakeSocket(), FakeSocket(), FakeSocket(), FakeSocket(stuck=True)
        clients = [hub.attach(alice, "alice", "own"), hub.attach(bob, "bob", "own"),
                   hub.attach(ops, "ops", "all"), hub.attach(stuck, "stuck", "all")]
        hub.publish({"type": "job_started", "job": "j1", "client_id": "alice"})
        hub.publish({"type": "queue", "running": [], "queued": 0})
        await asyncio.sleep(0.01)
        assert [len(s.sent) for s in (alice, bob, ops)] == [2, 1, 2]
        for step in range(10):  # progress beyond the stuck client's buffer is dropped for it only
            hub.publish({"type": "node_progress", "job": "j1", "client_id": "alice", "step": step}, droppable=True)
            await asyncio.sleep(0)  # healthy senders drain between messages
        await asyncio.sleep(0.01)
        assert len(alice.sent) == 12 and len(ops.sent) == 12
        assert clients[3].dropped > 0 and not stuck.closed
        hub.publish({"type": "job_done", "job": "j1", "client_id": "alice"})  # must not be dropped: disconnect
        await asyncio.sleep(0.01)
        assert stuck.closed and stuck.close_code == 1013
        assert alice.sent[-1] == '{"type":"job_done","job":"j1","client_id":"alice"}'
        for client in clients:
            await hub.detach(client)
        assert len(hub) == 0

    asyncio.run(main())
