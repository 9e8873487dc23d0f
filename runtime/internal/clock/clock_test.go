package clock

import (
	"context"
	"testing"
	"time"
)

func TestSleepStopsOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if Sleep(ctx, Real, time.Hour) {
		t.Error("Sleep(canceled, 1h) = true, want false")
	}
	if Sleep(ctx, Real, 0) {
		t.Error("Sleep(canceled, 0) = true, want false")
	}
	if !Sleep(context.Background(), Real, time.Nanosecond) {
		t.Error("Sleep(1ns) = false")
	}
}

// TestFake: timers fire when the fake time passes them, in the order
// they are due, stopped and reset ones as told; each wait asked for is
// told on Timers.
func TestFake(t *testing.T) {
	start := time.Unix(1_000_000, 0)
	c := NewFake(start)
	var fired []string
	c.AfterFunc(2*time.Second, func() { fired = append(fired, "b") })
	c.AfterFunc(time.Second, func() { fired = append(fired, "a") })
	stopped := c.AfterFunc(time.Second, func() { fired = append(fired, "stopped") })
	if !stopped.Stop() || stopped.Stop() {
		t.Error("Stop of a running timer, then again: want true, then false")
	}
	timer := c.NewTimer(3 * time.Second)
	for _, want := range []time.Duration{2 * time.Second, time.Second, time.Second, 3 * time.Second} {
		if got := <-c.Timers(); got != want {
			t.Fatalf("Timers() gave %v, want %v", got, want)
		}
	}
	c.Advance(2500 * time.Millisecond)
	if len(fired) != 2 || fired[0] != "a" || fired[1] != "b" {
		t.Errorf("after 2.5 s fired %v, want [a b]", fired)
	}
	select {
	case <-timer.C():
		t.Fatal("the 3 s timer fired at 2.5 s")
	default:
	}
	if timer.Reset(time.Second) != true {
		t.Error("Reset of a running timer = false")
	}
	c.Advance(time.Second)
	select {
	case at := <-timer.C():
		if want := start.Add(3500 * time.Millisecond); !at.Equal(want) {
			t.Errorf("timer sent %v, want %v", at, want)
		}
	default:
		t.Fatal("the reset timer did not fire at 3.5 s")
	}
	if got := c.Nanotime(); got != int64(3500*time.Millisecond) {
		t.Errorf("Nanotime() = %d, want 3.5 s", got)
	}
}

// TestSleepOnFake: Sleep on a Fake returns once the test moves the time
// by the wait it asked for.
func TestSleepOnFake(t *testing.T) {
	c := NewFake(time.Unix(0, 0))
	done := make(chan bool)
	go func() { done <- Sleep(context.Background(), c, time.Minute) }()
	if d := <-c.Timers(); d != time.Minute {
		t.Fatalf("Sleep asked for %v, want 1m", d)
	}
	c.Advance(time.Minute)
	if !<-done {
		t.Error("Sleep = false")
	}
}
