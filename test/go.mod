module github.com/opview/opview/test

go 1.26.7

replace github.com/opview/opview => ../

require (
	github.com/opview/opview v0.0.0 // indirect
	github.com/prometheus/prometheus v0.316.0 // indirect
)
