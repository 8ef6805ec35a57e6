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
