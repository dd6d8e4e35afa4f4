package kube

import (
	"context"

	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// policyName is the name of a user's NetworkPolicy.
func policyName(uid string) string { return "ds01-u" + uid }

// userPolicy selects the user's pods and admits ingress from those pods
// alone. Exec and port-forward reach a pod through the kubelet, not the
// pod network, so the gateway's own sessions are not affected.
func userPolicy(namespace, uid string) *networkingv1.NetworkPolicy {
	mine := metav1.LabelSelector{MatchLabels: map[string]string{labelUID: uid}}
	return &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: policyName(uid), Namespace: namespace, Labels: map[string]string{labelUID: uid}},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: mine,
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress:     []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{PodSelector: &mine}}}},
		},
	}
}

func (k *Kube) fixPolicy(ctx context.Context, want *networkingv1.NetworkPolicy) error {
	api := k.c.Clientset.NetworkingV1().NetworkPolicies(want.Namespace)
	have, err := api.Get(ctx, want.Name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	if equality.Semantic.DeepEqual(have.Spec, want.Spec) {
		return nil
	}
	have.Spec = want.Spec
	_, err = api.Update(ctx, have, metav1.UpdateOptions{})
	return err
}
