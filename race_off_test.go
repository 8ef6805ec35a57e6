//go:build !race

package kafkawal_test

const raceEnabled = false
