package bus

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
)

// RoleKey is one role's nkey: the public key the server knows the user by,
// and the seed the user signs in with.
type RoleKey struct {
	Role   string
	Public string
	Seed   []byte
}

// NewKeys makes a fresh user nkey for every role.
func NewKeys() ([]RoleKey, error) {
	keys := make([]RoleKey, 0, len(Roles))
	for _, role := range Roles {
		kp, err := nkeys.CreateUser()
		if err != nil {
			return nil, err
		}
		k, err := keyOf(role, kp)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// KeyFromSeed is the key of role whose seed is seed (an nkey file's
// content).
func KeyFromSeed(role string, seed []byte) (RoleKey, error) {
	kp, err := nkeys.FromSeed(seed)
	if err != nil {
		return RoleKey{}, fmt.Errorf("%s: %w", role, err)
	}
	if pfx, _, err := nkeys.DecodeSeed(seed); err != nil || pfx != nkeys.PrefixByteUser {
		return RoleKey{}, fmt.Errorf("%s: not a user nkey seed (SU...)", role)
	}
	return keyOf(role, kp)
}

func keyOf(role string, kp nkeys.KeyPair) (RoleKey, error) {
	pub, err := kp.PublicKey()
	if err != nil {
		return RoleKey{}, err
	}
	seed, err := kp.Seed()
	if err != nil {
		return RoleKey{}, err
	}
	return RoleKey{Role: role, Public: pub, Seed: seed}, nil
}

// Users are the nats-server users of keys, each with its role's
// permissions: what an embedded server is given (EmbeddedConfig.Users).
func Users(keys []RoleKey) ([]*server.NkeyUser, error) {
	users := make([]*server.NkeyUser, 0, len(keys))
	for _, k := range keys {
		p, err := Permissions(k.Role)
		if err != nil {
			return nil, err
		}
		sp := &server.Permissions{
			Publish:   &server.SubjectPermission{Allow: p.Publish, Deny: p.DenyPublish},
			Subscribe: &server.SubjectPermission{Allow: p.Subscribe},
		}
		users = append(users, &server.NkeyUser{Nkey: k.Public, Permissions: sp})
	}
	return users, nil
}

// AuthorizationConfig is the nats-server configuration block that gives
// each key its role's permissions, to paste into (or include from) the
// server's configuration file.
func AuthorizationConfig(keys []RoleKey) (string, error) {
	var b strings.Builder
	b.WriteString("# darklaunch: one NATS user per service and two for people (darklaunch nats-config).\n")
	b.WriteString("# Each may publish and subscribe only where docs/protocol.md says its role does.\n")
	b.WriteString("authorization {\n  users = [\n")
	for _, k := range keys {
		p, err := Permissions(k.Role)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "    # %s\n    {\n      nkey: %s\n      permissions: {\n", k.Role, k.Public)
		if len(p.DenyPublish) > 0 {
			fmt.Fprintf(&b, "        publish: { allow: %s, deny: %s }\n", list(p.Publish), list(p.DenyPublish))
		} else {
			fmt.Fprintf(&b, "        publish: { allow: %s }\n", list(p.Publish))
		}
		fmt.Fprintf(&b, "        subscribe: { allow: %s }\n", list(p.Subscribe))
		b.WriteString("      }\n    }\n")
	}
	b.WriteString("  ]\n}\n")
	return b.String(), nil
}

func list(subjects []string) string {
	q := make([]string, len(subjects))
	for i, s := range subjects {
		q[i] = strconv.Quote(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}
