package etcd

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"strconv"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery"
)

// endpointValue is the JSON of etcd's naming/endpoints package (its
// internal.Update): Op 0 is Add.
type endpointValue struct {
	Op       int            `json:"Op"`
	Addr     string         `json:"Addr"`
	Metadata map[string]any `json:"Metadata,omitempty"`
}

// Metadata keys with a meaning of their own.
const (
	weightKey  = "weight"
	zoneKey    = "zone"
	regionKey  = "region"
	versionKey = "version"
	// Kubernetes' names of the zone and region labels, read too: the
	// keys operators who also run Kubernetes already set.
	k8sZoneKey   = "topology.kubernetes.io/zone"
	k8sRegionKey = "topology.kubernetes.io/region"
	// registeredAtKey holds Metadata.RegisteredAt, as discovery.FormatTime
	// writes it.
	registeredAtKey = "registered_at"
)

// parseValue reads one instance from a value in either format. A bad
// weight or registration time does not make the value invalid: it is left
// out of md and said in warn, for the caller to log.
func parseValue(v []byte) (addr string, md discovery.Metadata, warn, err error) {
	if len(v) > MaxValueSize {
		return "", md, nil, fmt.Errorf("%w: %d bytes, more than %d", ErrValue, len(v), MaxValueSize)
	}
	v = bytes.TrimSpace(v)
	addr = string(v)
	if len(v) > 0 && v[0] == '{' {
		var ev struct {
			Op       *int `json:"Op"`
			Addr     string
			Metadata any
		}
		if err := json.Unmarshal(v, &ev); err != nil {
			return "", md, nil, fmt.Errorf("%w: bad JSON: %v", ErrValue, err)
		}
		if ev.Op != nil && *ev.Op != 0 {
			return "", md, nil, fmt.Errorf("%w: Op %d is not an add", ErrValue, *ev.Op)
		}
		md, warn = parseMetadata(ev.Metadata)
		addr = ev.Addr
	}
	addr, err = discovery.ParseAddress(addr)
	if err != nil {
		return "", md, nil, fmt.Errorf("%w: %w", ErrValue, err)
	}
	return addr, md, warn, nil
}

// parseMetadata reads the metadata; a bad weight or registration time is
// left out and said in warn.
func parseMetadata(m any) (md discovery.Metadata, warn error) {
	fields, ok := m.(map[string]any)
	if !ok {
		return md, nil // absent, or a shape we do not read
	}
	var weightWarn, timeWarn error
	for k, v := range fields {
		switch k {
		case weightKey:
			w, err := parseWeight(v)
			if err != nil {
				weightWarn = fmt.Errorf("ignoring metadata weight %v: %v", v, err)
				continue
			}
			md.Weight = w
		case registeredAtKey:
			s, _ := v.(string)
			t, err := discovery.ParseTime(s)
			if err != nil {
				timeWarn = fmt.Errorf("ignoring metadata %s %v: %v", registeredAtKey, v, err)
				continue
			}
			md.RegisteredAt = t
		case zoneKey:
			md.Zone = fmt.Sprint(v)
		case regionKey:
			md.Region = fmt.Sprint(v)
		case k8sZoneKey:
			if _, ok := fields[zoneKey]; !ok {
				md.Zone = fmt.Sprint(v)
			}
		case k8sRegionKey:
			if _, ok := fields[regionKey]; !ok {
				md.Region = fmt.Sprint(v)
			}
		case versionKey:
			md.Version = fmt.Sprint(v)
		default:
			if md.Custom == nil {
				md.Custom = map[string]string{}
			}
			if s, ok := v.(string); ok {
				md.Custom[k] = s
			} else {
				b, _ := json.Marshal(v)
				md.Custom[k] = string(b)
			}
		}
	}
	return md, errors.Join(weightWarn, timeWarn) // in this order, whatever the map's
}

func parseWeight(v any) (uint32, error) {
	var f float64
	switch w := v.(type) {
	case float64:
		f = w
	case string:
		var err error
		if f, err = strconv.ParseFloat(w, 64); err != nil {
			return 0, err
		}
	default:
		return 0, fmt.Errorf("not a number")
	}
	if f < 0 || f > math.MaxUint32 || f != math.Trunc(f) {
		return 0, fmt.Errorf("not a whole number in 0-%d", uint32(math.MaxUint32))
	}
	return uint32(f), nil
}

// encodeValue writes an instance as etcd's naming/endpoints JSON, or as a
// plain address.
func encodeValue(inst discovery.Instance, plain bool) string {
	if plain {
		return inst.Address
	}
	ev := endpointValue{Addr: inst.Address}
	md := inst.Metadata
	if !md.IsZero() {
		ev.Metadata = map[string]any{}
		for k, v := range maps.All(md.Custom) {
			ev.Metadata[k] = v
		}
		if md.Weight != 0 {
			ev.Metadata[weightKey] = md.Weight
		}
		if md.Zone != "" {
			ev.Metadata[zoneKey] = md.Zone
		}
		if md.Region != "" {
			ev.Metadata[regionKey] = md.Region
		}
		if md.Version != "" {
			ev.Metadata[versionKey] = md.Version
		}
		if !md.RegisteredAt.IsZero() {
			ev.Metadata[registeredAtKey] = discovery.FormatTime(md.RegisteredAt)
		}
	}
	b, _ := json.Marshal(ev) // strings and numbers only: cannot fail
	return string(b)
}
