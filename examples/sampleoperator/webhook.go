package sampleoperator

import (
	"context"
	"encoding/json"
	"net/http"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// configMapValidator admits every ConfigMap except one whose data["deny"] is "true", and answers
// 400 to a request that does not carry a ConfigMap.
type configMapValidator struct{}

func (configMapValidator) Handle(_ context.Context, req admission.Request) admission.Response {
	var cm corev1.ConfigMap
	if len(req.Object.Raw) > 0 {
		if err := json.Unmarshal(req.Object.Raw, &cm); err != nil {
			return admission.Errored(http.StatusBadRequest, err)
		}
	}
	if cm.Data["deny"] == "true" {
		return admission.Denied("data.deny is true")
	}
	return admission.Allowed("")
}
