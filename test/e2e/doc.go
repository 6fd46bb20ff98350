// Package e2e is opview's end-to-end scenario on a real single-node cluster. The tests are behind
// the build tag e2e (`make e2e`); the framework they drive is test/e2e/framework.
package e2e
