package main

import "testing"

func TestArticle(t *testing.T) {
	for _, tc := range []struct{ word, want string }{
		{"GreeterClient", "a"},
		{"InventoryClient", "an"},
		{"OldClient", "an"},
		{"EchoClient", "an"},
		{"AuthClient", "an"},
		{"UncheckedClient", "an"},
		{"UpdateClient", "an"},
		{"UserClient", "a"},
		{"UnaryClient", "a"},
		{"UsageClient", "a"},
		{"OneClient", "a"},
		{"HourClient", "an"},
		{"HTTPClient", "an"},
		{"SMSClient", "an"},
		{"URLClient", "a"},
		{"KVClient", "a"},
		{"IOClient", "an"},
		{"X", "an"},
		{"Client", "a"},
		{"", "a"},
	} {
		if got := article(tc.word); got != tc.want {
			t.Errorf("article(%q) = %q, want %q", tc.word, got, tc.want)
		}
	}
}
