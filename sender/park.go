package sender

// parked is the part of a lane that lives in a park log.
type parked struct {
	// to: every record of the lane's own below it that was unacknowledged
	// when it was copied is in the park log.
	to uint64
	// skipBelow: at Open, the records of its own below it that the main
	// stream meets are in the park log.
	skipBelow uint64
}

// parkedBytes returns the size of l's park log, 0 without one (or l).
func (l *lane) parkedBytes() int64 {
	if l == nil || l.park == nil {
		return 0
	}
	return 0
}
