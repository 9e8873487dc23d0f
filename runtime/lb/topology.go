package lb

import "os"

// Where clients and servers are, for zone-aware routing (Service.ZoneAware).

// ZoneEnv and RegionEnv are the environment variables that say where this
// process runs when WithLocality does not: the zone ("us-east-1a") and the
// region ("us-east-1"). The generated server helper writes them into its
// instance's registry metadata, and clients rank the instances against
// them. Nothing is guessed: without them, and without WithLocality, a
// server publishes no zone and a client ranks every instance alike.
// (On Kubernetes, set them from the node's topology.kubernetes.io/zone and
// /region labels through the downward API.)
const (
	ZoneEnv   = "LB_ZONE"
	RegionEnv = "LB_REGION"
)

// Locality is where a process runs.
type Locality struct {
	Zone, Region string
}

// localityFromEnv is ZoneEnv and RegionEnv.
func localityFromEnv() Locality {
	return Locality{Zone: os.Getenv(ZoneEnv), Region: os.Getenv(RegionEnv)}
}

type localityOption Locality

func (l localityOption) applyDial(o *dialOptions)         { loc := Locality(l); o.locality = &loc }
func (l localityOption) applyRegister(o *registerOptions) { loc := Locality(l); o.locality = &loc }

// WithLocality says where this process runs, in place of ZoneEnv and
// RegionEnv. Given to Register (Register<Svc>BalancedServer), the instance
// is published with that zone and region (unless WithMetadata sets them);
// given to Dial (New<Svc>BalancedClient), the client ranks the instances
// against it under ZoneAware.
func WithLocality(zone, region string) Option { return localityOption{Zone: zone, Region: region} }

type clientIndexOption struct{ index, count int }

func (c clientIndexOption) applyDial(o *dialOptions) { o.clientIndex = &c }

// WithClientIndex says which of count clients this one is (0 to count-1),
// for deterministic subsetting under Service.Subset: every instance then
// gets the same number of clients, ±1. The usual sources are a
// StatefulSet pod's ordinal and a batch job's index. Without it, each
// client takes a random subset (rendezvous hashing), which moves fewer
// connections when instances come and go.
func WithClientIndex(index, count int) DialOption { return clientIndexOption{index, count} }
