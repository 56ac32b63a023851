"""faust's aiokafka consumer, handing each fetch to an agent as one batch instead of one event at a time.

Why: faust's own drain loop (`Consumer._drain_messages`) awaits the conductor once per message
through `wait_first` (two tasks per message), and each message then crosses a queue, a stream and
its processors. Measured here (2 cores, bench P2): ~115 µs of CPU per event, a ceiling of 5–8k
events/s for an agent that does nothing, under the 20,000/s the ledger needs.

What stays faust's: the consumer thread, group membership, rebalances (flow control suspends and
clears the batch channel, `wait_empty` waits for tracked messages), the read-offset and gap
bookkeeping below (copied from faust's loop), acks (`Consumer.ack`) and offset commits
(`broker_commit_every` / `broker_commit_interval`). The agent acks a batch's messages only after
its database transaction committed, so an offset never passes an event not yet applied.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import ChannelT, Message, TopicT


class BatchingConsumer(faust_aiokafka.Consumer):
    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - runs in faust
        app = cast(BatchingApp, self.app)
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        read_offset = self._read_offset
        acks_enabled_for = app.topics.acks_enabled_for
        # What faust's `track_message` does but its sensors' `on_message_in`: a call per message
        # to each sensor (faust's Monitor keeps counters for its web view, disabled here; the
        # applier counts events on /metrics per batch), ~1.5 µs of a worker's ~30 per event.
        track = self._unacked_messages.add
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                batch: list[Message] = []
                await self.sleep(0)
                async for tp, message in self.getmany(timeout=1.0):
                    offset = message.offset
                    r_offset = read_offset[tp]
                    if r_offset is not None and offset < r_offset:
                        continue  # already read (faust drops these too)
                    if r_offset and offset - r_offset > 1 and acks_enabled_for(message.topic):
                        await self._add_gap(tp, r_offset + 1, offset)
                    # Tracked before delivery, as faust's streams do: a rebalance waits for these acks.
                    track(message)
                    batch.append(message)
                    read_offset[tp] = offset
                if self._commit_every is not None and self._n_acked >= self._commit_every:
                    self._n_acked = 0
                    await self.commit()
                if batch:
                    # A channel queues what it is given; faust types put() for events only.
                    put = app.batches.put(batch)  # type: ignore[arg-type]
                    await self.wait_first(put, self.suspend_flow.wait())
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise


class BatchingTransport(faust_aiokafka.Transport):
    Consumer = BatchingConsumer


class BatchingApp(faust.App):
    """A faust app whose Kafka topics reach their agent as lists of messages on `batches`."""

    batches: ChannelT[list[Message]]

    def _new_transport(self) -> BatchingTransport:
        return BatchingTransport(self.conf.broker_consumer, self)

    def batch_channel(self, topic: TopicT, *, maxsize: int) -> ChannelT[list[Message]]:
        """Subscribe to `topic` (offsets acked and committed by faust) and return the channel
        its fetches arrive on; `maxsize` batches are buffered before fetching waits."""
        self.topics.add(topic)
        self.batches = self.channel(maxsize=maxsize)
        return self.batches

    def is_current(self, message: Message) -> bool:
        """False for a message fetched before a rebalance: faust's streams skip those too (it will
        be fetched again from the committed offset by whoever owns its partition now)."""
        return bool(self.flow_control.is_active() and message.generation_id == self.consumer_generation_id)
