package bus

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/vmihailenco/msgpack/v5"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/darklaunch/darklaunch/shared"
)

// Headers and content types.
const (
	HeaderContentType = "Content-Type"
	HeaderAccept      = "Accept"
	HeaderMsgID       = nats.MsgIdHdr
	HeaderEventType   = "Darklaunch-Event"

	ContentTypeMsgpack = "application/msgpack"
	ContentTypeJSON    = "application/json"
	ContentTypeYAML    = "application/yaml"
)

// NormalizeContentType maps a Content-Type or Accept value (with parameters,
// aliases like "yaml" or "application/x-msgpack") to one of the three
// content types, or "" when it names none of them.
func NormalizeContentType(ct string) string {
	if ct == "" {
		return ""
	}
	if mt, _, err := mime.ParseMediaType(ct); err == nil {
		ct = mt
	}
	switch strings.ToLower(strings.TrimSpace(ct)) {
	case ContentTypeMsgpack, "application/x-msgpack", "application/vnd.msgpack", "msgpack":
		return ContentTypeMsgpack
	case ContentTypeJSON, "text/json", "json":
		return ContentTypeJSON
	case ContentTypeYAML, "application/x-yaml", "text/yaml", "text/x-yaml", "yaml", "yml":
		return ContentTypeYAML
	}
	return ""
}

// Sniff returns the content type of data: the header's when it names one,
// otherwise msgpack when data starts like a msgpack map, JSON when it starts
// with '{' or '[', and YAML otherwise (JSON is YAML, so YAML is the safe guess).
func Sniff(header string, data []byte) string {
	if ct := NormalizeContentType(header); ct != "" {
		return ct
	}
	if len(data) > 0 {
		if b := data[0]; (b >= 0x80 && b <= 0x8f) || b == 0xde || b == 0xdf {
			return ContentTypeMsgpack
		}
	}
	t := bytes.TrimSpace(data)
	if len(t) > 0 && (t[0] == '{' || t[0] == '[') {
		return ContentTypeJSON
	}
	return ContentTypeYAML
}

// Marshal encodes v as ct. Struct fields are named by their json tags in
// every encoding, so a message reads the same in msgpack, JSON and YAML.
func Marshal(ct string, v any) ([]byte, error) {
	switch NormalizeContentType(ct) {
	case ContentTypeMsgpack:
		var buf bytes.Buffer
		enc := msgpack.NewEncoder(&buf)
		enc.SetCustomStructTag("json")
		enc.UseCompactInts(true)
		enc.UseCompactFloats(true)
		if err := enc.Encode(v); err != nil {
			return nil, err
		}
		return buf.Bytes(), nil
	case ContentTypeJSON:
		return json.Marshal(v)
	case ContentTypeYAML:
		return yaml.Marshal(v)
	}
	return nil, fmt.Errorf("unsupported content type %q", ct)
}

// Unmarshal decodes data of content type ct (sniffed when empty) into v.
func Unmarshal(ct string, data []byte, v any) error {
	switch Sniff(ct, data) {
	case ContentTypeMsgpack:
		return unmarshalMsgpack(data, v)
	case ContentTypeJSON:
		return json.Unmarshal(data, v)
	default:
		return yaml.Unmarshal(data, v)
	}
}

// unmarshalMsgpack decodes msgpack into v. A message comes from any
// publisher on the bus, and msgpack v5 trusts it too much: checkMsgpack
// refuses lengths the message cannot hold before any allocation, and a panic
// (on a nil where a struct such as time.Time is expected, found by fuzzing)
// becomes an error, so one bad message cannot stop a service.
func unmarshalMsgpack(data []byte, v any) error {
	_, err := decodeMsgpack(data, v, false)
	return err
}

// UnmarshalMsgpackStrict decodes one msgpack document into v with the same
// guards, and refuses what a lenient decode would drop silently: a field v
// does not have (a typo), and bytes after the document.
func UnmarshalMsgpackStrict(data []byte, v any) error {
	rest, err := decodeMsgpack(data, v, true)
	if err != nil {
		return err
	}
	if rest > 0 {
		return fmt.Errorf("msgpack: %d bytes after the document; send one document per message", rest)
	}
	return nil
}

// UnmarshalStrict decodes one request of content type ct (sniffed when
// empty) into v as strictly as the create endpoint reads a document: field
// names are case-sensitive, and an unknown or duplicate field (a typo) is an
// error naming it instead of being dropped. The error quotes at most a short
// prefix of what it was given (shared.Excerpt), whatever the payload's size.
func UnmarshalStrict(ct string, data []byte, v any) error {
	if Sniff(ct, data) == ContentTypeMsgpack {
		return shortError(UnmarshalMsgpackStrict(data, v))
	}
	// JSON is YAML: one path for both, through Kubernetes' strict decoder
	// as experiment.Decode does; the strict YAML conversion refuses a
	// duplicate key, which the plain one would resolve silently.
	j, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return shortError(errors.New(strings.TrimPrefix(err.Error(), "error converting YAML to JSON: ")))
	}
	strict, err := kjson.UnmarshalStrict(j, v)
	if err != nil {
		return shortError(err)
	}
	if len(strict) == 0 {
		return nil
	}
	const listed = 3
	var msgs []string
	for _, se := range strict[:min(len(strict), listed)] {
		msgs = append(msgs, se.Error())
	}
	if len(strict) > listed {
		msgs = append(msgs, fmt.Sprintf("and %d more", len(strict)-listed))
	}
	return shortError(errors.New(strings.Join(msgs, "; ")))
}

// maxDecodeError bounds a decoder's message in an error reply.
const maxDecodeError = 256

// shortError is err with a message fit for a reply whatever the input:
// every quoted string in it (an unknown field's name, say) cut to an
// Excerpt, and the whole clipped to maxDecodeError bytes.
func shortError(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	var b strings.Builder
	for i := 0; i < len(msg); {
		q, qerr := "", error(nil)
		if msg[i] == '"' {
			q, qerr = strconv.QuotedPrefix(msg[i:])
		}
		if msg[i] != '"' || qerr != nil {
			b.WriteByte(msg[i])
			i++
			continue
		}
		s, _ := strconv.Unquote(q)
		b.WriteString(shared.Excerpt(s))
		i += len(q)
	}
	return errors.New(shared.Clip(b.String(), maxDecodeError))
}

// decodeMsgpack decodes data into v and returns how many bytes were left.
func decodeMsgpack(data []byte, v any, strict bool) (rest int, err error) {
	if err := checkMsgpack(data); err != nil {
		return 0, err
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("msgpack: malformed message: %v", r)
		}
	}()
	r := bytes.NewReader(data)
	dec := msgpack.NewDecoder(r)
	dec.SetCustomStructTag("json")
	dec.DisallowUnknownFields(strict)
	if err := dec.Decode(v); err != nil {
		return 0, fmt.Errorf("msgpack: %w", err)
	}
	return r.Len(), nil
}

// NewMsg builds a msgpack message for subject with its Content-Type header.
func NewMsg(subject string, v any) (*nats.Msg, error) {
	data, err := Marshal(ContentTypeMsgpack, v)
	if err != nil {
		return nil, err
	}
	m := nats.NewMsg(subject)
	m.Data = data
	m.Header.Set(HeaderContentType, ContentTypeMsgpack)
	return m, nil
}

// DecodeMsg decodes a message by its Content-Type header (sniffed if absent).
func DecodeMsg(m *nats.Msg, v any) error {
	ct := ""
	if m.Header != nil {
		ct = m.Header.Get(HeaderContentType)
	}
	return Unmarshal(ct, m.Data, v)
}
