package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/darklaunch/darklaunch/shared/bus"
)

func newDecodeCmd(g *globals) *cobra.Command {
	var pretty bool
	cmd := &cobra.Command{
		Use:   "decode",
		Short: "Turn a message on stdin (msgpack, JSON or YAML) into JSON, for nats sub --translate",
		Long: `Read one message body on stdin and print it as JSON. Use it to read the bus:

  nats sub 'darklaunch.events.>' --translate 'darklaunch decode'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			data, err := io.ReadAll(io.LimitReader(g.stdin, 64<<20))
			if err != nil {
				return withCode(ExitInvalid, err)
			}
			out, err := decodeToJSON(data, pretty)
			if err != nil {
				return withCode(ExitInvalid, err)
			}
			_, err = fmt.Fprintf(g.stdout, "%s\n", out)
			return err
		},
	}
	cmd.Flags().BoolVar(&pretty, "pretty", false, "indent the JSON")
	return cmd
}

// decodeToJSON decodes a message of any of the bus's encodings into JSON.
func decodeToJSON(data []byte, pretty bool) ([]byte, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return []byte("null"), nil
	}
	var v any
	if err := bus.Unmarshal("", data, &v); err != nil {
		return nil, fmt.Errorf("not msgpack, JSON or YAML: %w", err)
	}
	if pretty {
		return json.MarshalIndent(v, "", "  ")
	}
	return json.Marshal(v)
}
