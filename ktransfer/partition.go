package ktransfer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/IBM/sarama"
)

// partition reads one partition of a module's topic and dispatches its
// records. It can be started and stopped on its own (the fleet moves
// partitions between processes).
type partition struct {
	m       *module
	id      int32
	log     *slog.Logger
	tracker *tracker
	pc      sarama.PartitionConsumer

	released atomic.Bool  // given up: queued records are dropped, not pushed
	pushing  atomic.Int32 // pushes of its records in progress
}

// run reads until ctx ends or the partition cannot go on.
func (p *partition) run(ctx context.Context) error {
	m := p.m
	start, stored, err := m.t.loadOffset(m.cfg.Name, m.cfg.Topic, p.id)
	if err != nil {
		return err
	}
	if !stored {
		if start, err = p.resolve(m.cfg.StartFrom); err != nil {
			return err
		}
		p.log.Info("no stored offset; starting", "start_from", m.cfg.StartFrom, "offset", start)
		// Store it now: the partition shows in the layout (and in
		// kmonitor's lag) before its first record.
		if err := m.t.storeOffsets(m.cfg.Name, m.cfg.Topic, map[int32]int64{p.id: start}); err != nil {
			return err
		}
	}
	for ctx.Err() == nil {
		pc, err := m.consumer.ConsumePartition(m.cfg.Topic, p.id, start)
		if errors.Is(err, sarama.ErrOffsetOutOfRange) {
			if start, err = p.outOfRange(start); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("consume %s/%d from %d: %w", m.cfg.Topic, p.id, start, err)
		}
		m.mu.Lock() // the committer and /status read them
		if p.tracker == nil {
			p.tracker = newTracker(start)
		}
		p.pc = pc
		m.mu.Unlock()
		p.log.Info("partition started", "offset", start)
		next, err := p.read(ctx, pc)
		pc.AsyncClose()
		for range pc.Messages() { // drain what was fetched; it is read again later
		}
		if err == nil {
			return nil
		}
		if !errors.Is(err, sarama.ErrOffsetOutOfRange) {
			return err
		}
		if start, err = p.outOfRange(next); err != nil {
			return err
		}
	}
	return nil
}

// read dispatches records until ctx ends or the consumer fails; it returns
// the next offset it would have read.
func (p *partition) read(ctx context.Context, pc sarama.PartitionConsumer) (int64, error) {
	next := int64(-1)
	hw := p.m.stats.highWaterGauge(p.id)
	for {
		select {
		case <-ctx.Done():
			return next, nil
		case msg, ok := <-pc.Messages():
			if !ok {
				return next, nil
			}
			if !p.m.dispatch(ctx, &record{msg: msg, part: p}) {
				return next, nil
			}
			next = msg.Offset + 1
			hw.Set(float64(pc.HighWaterMarkOffset()))
		case cerr, ok := <-pc.Errors():
			if !ok {
				return next, nil
			}
			if errors.Is(cerr.Err, sarama.ErrOffsetOutOfRange) {
				return next, cerr.Err
			}
			p.log.Warn("consumer error", "err", cerr.Err)
		}
	}
}

// outOfRange applies offset_out_of_range to a stored offset that Kafka no
// longer has, loudly: records between it and the oldest one were deleted
// by retention before they were pushed.
func (p *partition) outOfRange(offset int64) (int64, error) {
	policy := p.m.cfg.OffsetOutOfRange
	oldest, _ := p.m.t.client.GetOffset(p.m.cfg.Topic, p.id, sarama.OffsetOldest)
	newest, _ := p.m.t.client.GetOffset(p.m.cfg.Topic, p.id, sarama.OffsetNewest)
	p.log.Error("stored offset out of range", "offset", offset, "oldest", oldest, "newest", newest, "offset_out_of_range", policy)
	p.m.stats.outOfRange()
	if policy == "stop" {
		return 0, fmt.Errorf("%s/%d: offset %d out of range [%d, %d] and offset_out_of_range is stop", p.m.cfg.Topic, p.id, offset, oldest, newest)
	}
	return p.resolve(policy)
}

// resolve turns oldest/newest into an offset.
func (p *partition) resolve(where string) (int64, error) {
	which := sarama.OffsetOldest
	if where == "newest" {
		which = sarama.OffsetNewest
	}
	off, err := p.m.t.client.GetOffset(p.m.cfg.Topic, p.id, which)
	if err != nil {
		return 0, fmt.Errorf("%s offset of %s/%d: %w", where, p.m.cfg.Topic, p.id, err)
	}
	return off, nil
}
