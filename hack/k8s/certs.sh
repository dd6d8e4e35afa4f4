# shellcheck shell=bash
# Certificates of the test cluster, made with openssl (sourced by up.sh).
# EC P-256 keys: fast to make, accepted by every component.

# mkcert NAME CN ORG USAGE [SAN...]: $PKI/NAME.{key,crt} signed by the CA.
# USAGE is serverAuth, clientAuth or both.
mkcert() {
	local name=$1 cn=$2 org=$3 usage=$4 subj
	shift 4
	subj="/CN=$cn"
	[ -n "$org" ] && subj="/O=$org$subj"
	openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/$name.key" 2>/dev/null
	openssl req -new -key "$PKI/$name.key" -subj "$subj" -out "$PKI/$name.csr"
	{
		echo "basicConstraints = critical, CA:FALSE"
		echo "keyUsage = critical, digitalSignature, keyEncipherment"
		echo "extendedKeyUsage = $usage"
		if [ "$#" -gt 0 ]; then
			local IFS=,
			echo "subjectAltName = $*"
		fi
	} >"$PKI/$name.ext"
	openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
		-days 3650 -sha256 -extfile "$PKI/$name.ext" -out "$PKI/$name.crt" 2>/dev/null
	rm -f "$PKI/$name.csr" "$PKI/$name.ext"
}

# make_pki NODE NODE_IP: every certificate and key the cluster uses. Kept
# across restarts (kubeconfigs handed out stay valid) unless the node's name
# or address changed.
make_pki() {
	local node=$1 ip=$2 id="$1 $2"
	if [ -f "$PKI/identity" ] && [ "$(cat "$PKI/identity")" = "$id" ] && [ -f "$PKI/sa.pub" ]; then
		return 0
	fi
	log "making certificates (node $node, $ip)"
	rm -rf "$PKI"
	mkdir -p "$PKI"
	chmod 700 "$PKI"
	openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/ca.key" 2>/dev/null
	openssl req -x509 -new -key "$PKI/ca.key" -subj "/CN=ds01-k8s-ca" -days 3650 -sha256 \
		-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
		-out "$PKI/ca.crt"
	mkcert apiserver kube-apiserver "" serverAuth \
		IP:127.0.0.1 "IP:$ip" "IP:${K8S_SERVICE_CIDR%.*}.1" DNS:localhost "DNS:$node" \
		DNS:kubernetes DNS:kubernetes.default DNS:kubernetes.default.svc DNS:kubernetes.default.svc.cluster.local
	mkcert admin kubernetes-admin system:masters clientAuth
	mkcert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters clientAuth
	mkcert controller-manager system:kube-controller-manager "" clientAuth
	mkcert scheduler system:kube-scheduler "" clientAuth
	mkcert node "system:node:$node" system:nodes clientAuth
	mkcert kubelet-serving "$node" "" serverAuth "IP:$ip" IP:127.0.0.1 "DNS:$node" DNS:localhost
	openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/sa.key" 2>/dev/null
	openssl ec -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
	chmod 600 "$PKI"/*.key
	echo "$id" >"$PKI/identity"
}

# kubeconfig FILE CERTNAME: a kubeconfig for https://127.0.0.1:PORT with the
# certificates embedded (it works when copied elsewhere).
kubeconfig() {
	local file=$1 cert=$2
	cat >"$file" <<KC
apiVersion: v1
kind: Config
clusters:
- name: ds01-k8s
  cluster:
    server: https://127.0.0.1:$K8S_API_PORT
    certificate-authority-data: $(base64 -w0 "$PKI/ca.crt")
users:
- name: $cert
  user:
    client-certificate-data: $(base64 -w0 "$PKI/$cert.crt")
    client-key-data: $(base64 -w0 "$PKI/$cert.key")
contexts:
- name: ds01-k8s
  context:
    cluster: ds01-k8s
    user: $cert
current-context: ds01-k8s
KC
	chmod 600 "$file"
}
