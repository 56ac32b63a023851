"""faust's aiokafka consumer, handing each fetch to an agent as one batch instead of one event at a time.

Why: faust's own drain loop (`Consumer._drain_messages`) awaits the conductor once per message
through `wait_first` (two tasks per message), and each message then crosses a queue, a stream and
its processors. Measured here (2 cores, bench P2): ~115 µs of CPU per event, a ceiling of 5–8k
events/s for an agent that does nothing, under the 20,000/s the ledger needs.

What stays faust's: the consumer thread, group membership, rebalances (flow control suspends and
clears the batch channel, `wait_empty` waits for tracked messages), the read-offset and gap
bookkeeping below (copied from faust's loop), the ack bookkeeping (`Consumer.ack`'s, done for a
batch at once) and offset commits (`broker_commit_every` / `broker_commit_interval`). The agent
acks a batch's messages only after its database transaction committed, so an offset never passes
an event not yet applied.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any, cast

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import ChannelT, Message, TopicT
from faust.types.tuples import ack_lock
from mode.utils.futures import notify


class BatchingConsumer(faust_aiokafka.Consumer):
    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - runs in faust
        app = cast(BatchingApp, self.app)
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                await self.sleep(0)
                batch = await self._fetch_batch(timeout=1.0)
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

    async def _fetch_batch(self, *, timeout: float) -> list[Message]:  # pragma: no cover - runs in faust
        """One fetch as a list of tracked messages: faust's `getmany` and the read-offset and gap
        bookkeeping of its drain loop, without an async generator step (and a round-robin
        generator step) per message. Partition by partition: order matters within a partition
        only (a site's ledger, a partition's WindowClosed marker), as faust's round robin keeps it.
        Nothing here awaits between two messages but for a gap (compacted or transactional
        topics), so flow and generation are checked per partition, and per message only once
        such an await happened."""
        records, active_partitions = await self._wait_next_records(timeout)
        generation_id = self.app.consumer_generation_id
        if records is None or self.should_stop:
            return []
        if not self.flow_active:
            # What faust's getmany does when a rebalance stopped the flow.
            try:
                await self.perform_seek()
            except Exception as ex:
                self.log.warning(f"exception performing seek when flow not active {ex}")
            return []
        to_message = self._to_message
        read_offset = self._read_offset
        acks_enabled_for = self.app.topics.acks_enabled_for
        # What faust's `track_message` does but its sensors' `on_message_in`: a call per message
        # to each sensor (faust's Monitor keeps counters for its web view, disabled here; the
        # applier counts events on /metrics per batch), ~1.5 µs of a worker's ~30 per event.
        track = self._unacked_messages.add
        batch: list[Message] = []
        awaited = False
        for tp, tp_records in records.items():
            if not self._flowing(generation_id):
                break
            if not (active_partitions is None or tp in active_partitions or tp in self._buffered_partitions):
                continue
            self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
            gaps = acks_enabled_for(tp.topic)
            for record in tp_records:
                if awaited and not self._flowing(generation_id):
                    return batch  # a rebalance began while a gap was recorded: faust stops there too
                message = to_message(tp, record)
                offset = message.offset
                r_offset = read_offset[tp]
                if r_offset is not None and offset < r_offset:
                    continue  # already read (faust drops these too)
                if r_offset and offset - r_offset > 1 and gaps:
                    await self._add_gap(tp, r_offset + 1, offset)
                    awaited = True
                # Tracked before delivery, as faust's streams do: a rebalance waits for these acks.
                track(message)
                batch.append(message)
                read_offset[tp] = offset
        return batch

    def _flowing(self, generation_id: int) -> bool:
        return bool(self.flow_active and self.app.consumer_generation_id == generation_id)

    def ack_batch(self, messages: Iterable[Message]) -> None:
        """`Consumer.ack` for each message, under one hold of faust's ack lock and with one
        wake-up of whoever waits for acks, instead of one each per message."""
        acks_enabled_for = self.app.topics.acks_enabled_for
        committed_offset, acked_index, acked = self._committed_offset, self._acked_index, self._acked
        untrack = self._unacked_messages.discard
        with ack_lock:
            n_acked = 0
            try:
                for message in messages:
                    if message.acked:
                        continue
                    message.acked = True
                    if not acks_enabled_for(message.topic):
                        continue
                    tp, offset = message.tp, message.offset
                    committed = committed_offset[tp]
                    if committed is None or offset >= committed:
                        index = acked_index[tp]
                        if offset not in index:
                            untrack(message)
                            index.add(offset)
                            acked[tp].append(offset)
                            n_acked += 1
            finally:
                self._n_acked += n_acked
                notify(self._waiting_for_ack)


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

    def ack_batch(self, messages: Iterable[Message]) -> None:
        """Ack messages whose effects are committed (their offsets may now be committed)."""
        cast(BatchingConsumer, self.consumer).ack_batch(messages)

    def is_current(self, message: Message) -> bool:
        """False for a message fetched before a rebalance: faust's streams skip those too (it will
        be fetched again from the committed offset by whoever owns its partition now)."""
        return bool(self.flow_control.is_active() and message.generation_id == self.consumer_generation_id)
