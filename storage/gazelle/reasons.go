package gazelle

// deletionLabels are the names of Gazelle's deletion reason codes, which the
// site sends with delete_torrent and Ocelot shows to clients announcing the
// deleted torrent. Index = code.
var deletionLabels = [...]string{
	"Dupe",
	"Trump",
	"Bad File Names",
	"Bad Folder Names",
	"Bad Tags",
	"Disallowed Format",
	"Discs Missing",
	"Discography",
	"Edited Log",
	"Inaccurate Bitrate",
	"Low Bitrate",
	"Mutt Rip",
	"Disallowed Source",
	"Encode Errors",
	"Specifically Banned",
	"Tracks Missing",
	"Transcode",
	"Unapproved Cassette",
	"Unsplit Album",
	"User Compilation",
	"Wrong Format",
	"Wrong Media",
	"Audience Recording",
}

// NoReason is the reason code of a deletion without a reason: delete_torrent
// without a reason parameter.
const NoReason = -1

// DeletionLabel names a deletion reason code. ok is false for NoReason
// (and any other negative code), which Ocelot answers with a plain
// "Unregistered torrent"; an unknown non-negative code has the empty label,
// as in Ocelot.
func DeletionLabel(reason int) (label string, ok bool) {
	if reason < 0 {
		return "", false
	}
	if reason < len(deletionLabels) {
		return deletionLabels[reason], true
	}
	return "", true
}

// DeletionMessage is the failure reason Ocelot gives an announce for a
// torrent deleted with this reason code within the deletion reason
// lifetime: "Unregistered torrent" or "Unregistered torrent: <label>".
func DeletionMessage(reason int) string {
	label, ok := DeletionLabel(reason)
	if !ok {
		return "Unregistered torrent"
	}
	return "Unregistered torrent: " + label
}
