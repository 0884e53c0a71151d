package kube

// The objects deploy creates, as the JSON the API takes. Written as maps
// (not typed structs) because cloonix only ever sends them.

type obj = map[string]any

// crd is the Lab CustomResourceDefinition: spec and status are cloonix's
// own JSON (kept as given), status a subresource so that the controller
// and deploy never overwrite each other.
func crd() obj {
	schema := obj{"type": "object", "x-kubernetes-preserve-unknown-fields": true}
	return obj{
		"apiVersion": "apiextensions.k8s.io/v1",
		"kind":       "CustomResourceDefinition",
		"metadata":   obj{"name": "labs." + Group},
		"spec": obj{
			"group": Group,
			"scope": "Namespaced",
			"names": obj{"plural": "labs", "singular": "lab", "kind": "Lab", "shortNames": []string{"clab"}},
			"versions": []obj{{
				"name": Version, "served": true, "storage": true,
				"subresources": obj{"status": obj{}},
				"schema":       obj{"openAPIV3Schema": schema},
				"additionalPrinterColumns": []obj{
					{"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
					{"name": "Nodes", "type": "integer", "jsonPath": ".status.ready"},
					{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
				},
			}},
		},
	}
}

// SwitchAccount is the service account of the switch DaemonSet and the
// controller.
const SwitchAccount = "cloonix"

// rbac: the switch reads pods, nodes and labs; the controller also
// creates and deletes pods, writes lab status and records events.
func rbac(ns string) []struct {
	path string
	obj  obj
} {
	role := obj{
		"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
		"metadata": obj{"name": "cloonix"},
		"rules": []obj{
			{"apiGroups": []string{""}, "resources": []string{"pods"}, "verbs": []string{"get", "list", "watch", "create", "delete"}},
			{"apiGroups": []string{""}, "resources": []string{"nodes"}, "verbs": []string{"get", "list", "watch"}},
			{"apiGroups": []string{""}, "resources": []string{"events"}, "verbs": []string{"create", "patch"}},
			{"apiGroups": []string{Group}, "resources": []string{"labs", "labs/status"}, "verbs": []string{"get", "list", "watch", "update", "patch"}},
		},
	}
	binding := obj{
		"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
		"metadata": obj{"name": "cloonix-" + ns},
		"roleRef":  obj{"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cloonix"},
		"subjects": []obj{{"kind": "ServiceAccount", "name": SwitchAccount, "namespace": ns}},
	}
	sa := obj{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": obj{"name": SwitchAccount, "namespace": ns}}
	return []struct {
		path string
		obj  obj
	}{
		{"/apis/rbac.authorization.k8s.io/v1/clusterroles", role},
		{"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", binding},
		{"/api/v1/namespaces/" + ns + "/serviceaccounts", sa},
	}
}

// inClusterEnv tells the cloonix pods where the API is (the address the
// deploying client used: it works on clusters without a service proxy)
// and which node they run on.
func inClusterEnv(api string) []obj {
	return []obj{
		{"name": "CLOONIX_KUBE_API", "value": api},
		{"name": "CLOONIX_NODE", "valueFrom": obj{"fieldRef": obj{"fieldPath": "spec.nodeName"}}},
		{"name": "CLOONIX_NAMESPACE", "valueFrom": obj{"fieldRef": obj{"fieldPath": "metadata.namespace"}}},
	}
}

// switchDaemonSet: one cloonix switch per Kubernetes node. It needs the
// host's network (VXLAN between nodes, taps created there first),
// the host's pids (to find each pod's network namespace from its
// cgroup) and privileges (moving interfaces between namespaces).
func switchDaemonSet(ns, image, api string) obj {
	labels := obj{LabelRole: "switch"}
	return obj{
		"apiVersion": "apps/v1", "kind": "DaemonSet",
		"metadata": obj{"name": "cloonix-switch", "namespace": ns, "labels": labels},
		"spec": obj{
			"selector": obj{"matchLabels": labels},
			"template": obj{
				"metadata": obj{"labels": labels},
				"spec": obj{
					"serviceAccountName":            SwitchAccount,
					"hostNetwork":                   true,
					"hostPID":                       true,
					"terminationGracePeriodSeconds": 5,
					"tolerations":                   []obj{{"operator": "Exists"}},
					"containers": []obj{{
						"name": "switch", "image": image, "imagePullPolicy": "IfNotPresent",
						"args":            []string{"kube", "switch"},
						"env":             inClusterEnv(api),
						"securityContext": obj{"privileged": true},
					}},
				},
			},
		},
	}
}

// controllerDeployment: the Lab controller, in the cluster.
func controllerDeployment(ns, image, api string) obj {
	labels := obj{LabelRole: "controller"}
	return obj{
		"apiVersion": "apps/v1", "kind": "Deployment",
		"metadata": obj{"name": "cloonix-controller", "namespace": ns, "labels": labels},
		"spec": obj{
			"replicas": 1,
			"selector": obj{"matchLabels": labels},
			"template": obj{
				"metadata": obj{"labels": labels},
				"spec": obj{
					"serviceAccountName":            SwitchAccount,
					"hostNetwork":                   true,
					"terminationGracePeriodSeconds": 2,
					// A controller on a node that goes away is replaced
					// at once, so that it moves that node's lab pods.
					"tolerations": lostTolerations(2),
					"containers": []obj{{
						"name": "controller", "image": image, "imagePullPolicy": "IfNotPresent",
						"args": []string{"kube", "controller", "--in-cluster"},
						"env":  inClusterEnv(api),
					}},
				},
			},
		},
	}
}

// labPod is one lab node. It gets the network admin rights a local cnt
// node has (addresses, routes, routing daemons), no more; its ConfigMap
// (demo.go) at /.cloonix, and the systemctl shim.
func labPod(lab *Lab, n LabNode) obj {
	cfg := "cloonix"
	spec := obj{
		"restartPolicy":                 "Always",
		"terminationGracePeriodSeconds": 1,
		"automountServiceAccountToken":  false,
		"enableServiceLinks":            false,
		"hostname":                      PodName(lab.Metadata.Name, n.Name),
		"tolerations":                   lostTolerations(tolerateLost),
		"containers": []obj{{
			"name": "node", "image": n.Image, "imagePullPolicy": "IfNotPresent",
			"command": []string{"/bin/sh", "-c", nodeStart(n)},
			"securityContext": obj{"capabilities": obj{
				"add": []string{"NET_ADMIN", "NET_RAW", "SYS_ADMIN"}}},
			"volumeMounts": []obj{
				{"name": cfg, "mountPath": "/.cloonix", "readOnly": true},
				{"name": cfg, "mountPath": "/usr/bin/systemctl", "subPath": "systemctl", "readOnly": true},
			},
			"readinessProbe": obj{
				"exec":          obj{"command": []string{"/bin/sh", "-c", "test -s " + readyFile}},
				"periodSeconds": 2,
			},
		}},
		"volumes": []obj{{"name": cfg, "configMap": obj{"name": PodName(lab.Metadata.Name, n.Name), "defaultMode": 0o755}}},
	}
	if n.K8sNode != "" {
		spec["nodeSelector"] = obj{"kubernetes.io/hostname": n.K8sNode}
	}
	return obj{
		"apiVersion": "v1", "kind": "Pod",
		"metadata": obj{
			"name":        PodName(lab.Metadata.Name, n.Name),
			"namespace":   lab.Metadata.Namespace,
			"labels":      obj{LabelLab: lab.Metadata.Name, LabelNode: n.Name},
			"annotations": obj{"cloonix.io/image": n.Image},
			"ownerReferences": []obj{{
				"apiVersion": Group + "/" + Version, "kind": "Lab", "name": lab.Metadata.Name,
				"uid": lab.Metadata.UID, "controller": true, "blockOwnerDeletion": true,
			}},
		},
		"spec": spec,
	}
}
