package kafkawal_test

import (
	"github.com/rs/zerolog"
	"os"
)

func init() {
	if os.Getenv("KWDEBUG") != "" {
		l := zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr}).Level(zerolog.DebugLevel)
		debugLogger = &l
	}
}
