package recovery

// The members of an activity object the tool reads, by name. The decoder
// (activity.go) and the filter (filter.go) both name them from here, and
// both take the first of a member given twice: an activity's CEF line and
// the filter's decision on it read the same value.
const (
	fieldID             = "_id"
	fieldTimestamp      = "timestamp"
	fieldCreated        = "created"    // when MCAS saved the activity
	fieldCreatedRaw     = "createdRaw" // the same, read when created is missing
	fieldAppID          = "appId"      // the app (service) the activity is from: cs2
	fieldAppName        = "appName"
	fieldEventTypeName  = "eventTypeName"
	fieldEventTypeValue = "eventTypeValue"
	fieldDescription    = "description"
	fieldUser           = "user"
	fieldUserName       = "userName"       // in user, and in failedUserData
	fieldFailedUserData = "failedUserData" // a failed log-on's account, which has no user.userName
	fieldDevice         = "device"
	fieldClientIP       = "clientIP"  // in device
	fieldUserAgent      = "userAgent" // in device
	fieldMainInfo       = "mainInfo"
	fieldEventObjects   = "eventObjects" // in mainInfo: the objects of the activity, cs3
	fieldRole           = "role"         // in an event object

	// The activity's description is made of its operation's name, a
	// colon and the object acted on: the name is the CEF Name.
	fieldDescriptionMetadata = "description_metadata"
	fieldOperationName       = "operation_name" // in description_metadata

	// Lists an exporter may have written under the agent's CEF labels;
	// the API's answers have none of them. When present they are cs2–cs4.
	fieldUniqueServiceAppIDs = "uniqueServiceAppIds"
	fieldTargetObjects       = "targetObjects"
	fieldPolicyIDs           = "policyIDs"
)
