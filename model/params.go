package model

import "strings"

// Counts are parameter counts computed from the weight table (dsa.md §11).
// Activated counts include the embedding and the head, as DeepSeek-V3 counts.
type Counts struct {
	Total          int64 // main model
	Indexers       int64 // … of which the DSA indexers
	RoutedExperts  int64 // … of which routed experts
	Activated      int64 // per token, main model
	MTP            int64 // MTP blocks, own weights
	MTPWithCopies  int64 // MTP incl. its copies of the embedding and head
	OnDisk         int64 // main + MTP incl. copies
	ExpertParams   int64 // one expert
	CacheBytesBF16 int64 // per token, all layers: MLA latent + rope key + indexer key in bf16
}

// Count computes the parameter counts of the configuration.
func (c *Config) Count() Counts {
	var n Counts
	for _, t := range c.Tensors(true) {
		size := int64(numel(t.Shape))
		switch {
		case t.MTP:
			n.MTP += size
		default:
			n.Total += size
			if strings.Contains(t.Name, ".indexer.") {
				n.Indexers += size
			}
			if t.Expert >= 0 {
				n.RoutedExperts += size
			}
		}
	}
	n.ExpertParams = int64(3 * c.HiddenSize * c.MoEIntermediateSize)
	inactive := int64(c.NumMoELayers()) * int64(c.NumRoutedExperts-c.NumExpertsPerTok) * n.ExpertParams
	n.Activated = n.Total - inactive
	embed := int64(c.VocabSize) * int64(c.HiddenSize)
	n.MTPWithCopies = n.MTP + int64(c.NumNextNLayers)*2*embed
	n.OnDisk = n.Total + n.MTPWithCopies
	n.CacheBytesBF16 = 2 * int64(c.NumHiddenLayers) * int64(c.CacheWidth())
	return n
}

// CacheWidth is the number of cached values per token and layer: the MLA
// latent, the rope key and, with DSA, the indexer key (dsa.md §8).
func (c *Config) CacheWidth() int {
	w := c.KVLoRARank + c.QKRopeHeadDim
	if c.HasIndexer() {
		w += c.IndexHeadDim
	}
	return w
}
