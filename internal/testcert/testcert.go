// Package testcert makes TLS certificates for tests.
package testcert

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Files are a test authority's certificate, a server certificate for
// localhost and 127.0.0.1 that it signed and the server's key, as PEM
// files, with a pool that trusts the authority.
type Files struct {
	CA, Cert, Key string
	Pool          *x509.CertPool
}

// Issue writes a fresh authority and server certificate to dir (ca.pem,
// cert.pem and key.pem), replacing what is there. Each call makes a new
// authority, so a pool from an earlier call does not trust the new
// certificate: a renewal can be told from the certificate it replaced.
func Issue(t testing.TB, dir string) Files {
	t.Helper()
	caKey, caDER := certificate(t, &x509.Certificate{
		Subject: pkix.Name{CommonName: "chihaya test CA"},
		IsCA:    true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}, nil, nil)
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, der := certificate(t, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "localhost"},
		DNSNames:    []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, ca, caKey)
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, typ string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	f := Files{
		CA:   write("ca.pem", "CERTIFICATE", caDER),
		Cert: write("cert.pem", "CERTIFICATE", der),
		Key:  write("key.pem", "PRIVATE KEY", keyDER),
		Pool: x509.NewCertPool(),
	}
	f.Pool.AddCert(ca)
	return f
}

// certificate makes a key and a certificate of it from tmpl, valid for the
// hour around now, signed by parent's key (self-signed when parent is nil).
func certificate(t testing.TB, tmpl, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*ecdsa.PrivateKey, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber, err = rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	return key, der
}

// Handshake opens a TLS connection to addr trusting only pool, and closes
// it: nil means the server presented a certificate the pool trusts.
func Handshake(addr string, pool *x509.CertPool) error {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 3 * time.Second}, "tcp", addr, &tls.Config{RootCAs: pool})
	if err == nil {
		c.Close()
	}
	return err
}
